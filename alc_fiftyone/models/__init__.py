"""Probability models P(class | pixel) for the acquisition, behind one interface
(:mod:`.base`), resolved by name in :mod:`.registry`: ``"features"`` (:mod:`.features`, CPU),
``"field:<name>"`` and callables (:mod:`.external`), ``"sam_head"`` and ``"backbone:<resnet>"``
(:mod:`.heads`, on SAM embeddings cached by :mod:`.embeddings` or ResNet features)."""
