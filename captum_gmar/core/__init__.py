"""The pure mathematics, functions over tensors that know no model: head scores and fusion
(:mod:`.heads`), rollout (:mod:`.rollout`), token relevance to maps (:mod:`.maps`), the
relevance-propagation rules (:mod:`.lrp_rules`), Captum-style inputs and targets
(:mod:`.formatting`), and the memory and time estimates of a call (:mod:`.memory`)."""
