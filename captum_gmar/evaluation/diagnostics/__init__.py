"""Diagnostics of GMAR's head weights: head importance by masking
(:mod:`.head_importance`), the weights' decomposition into a class-independent and a
class-specific part (:mod:`.weight_decomposition`), per-head profiles
(:mod:`.head_profile`) and ablations of the weights (:mod:`.ablation`)."""
