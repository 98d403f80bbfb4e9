"""The attribution methods, one Captum ``Attribution`` subclass per file: GMAR
(:mod:`.gmar`), attention rollout (:mod:`.attention_rollout`), raw attention, GAE, token
Grad-CAM, AttnLRP and CP-LRP (:mod:`.lrp`). The attention-based ones share the template
method of :class:`.base.AttentionAttribution`: a method implements ``_explain(trace,
targets)``. Import them from :mod:`captum_gmar`."""
