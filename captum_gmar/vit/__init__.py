"""The model plumbing: which families are supported and how each is read
(:mod:`.architectures`, :mod:`.blocks`, :mod:`.calls`), capturing the attention of a pass
(:mod:`.capture`), the wrapper every method uses (:mod:`.model`), the model's state during
a pass (:mod:`.model_state`), relevance propagation during a pass (:mod:`.propagation`),
and the heads that turn other models into classes: zero-shot prompts (:mod:`.zero_shot`),
embeddings (:mod:`.embedding`) and the similarity to references (:mod:`.similarity`)."""
