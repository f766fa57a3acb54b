"""Array-level engine of alc-fiftyone: numpy/torch only, no FiftyOne import.

Every function here works on one image's arrays (probabilities, superpixel id maps, label
maps) so that it can be tested and benchmarked without a database: the acquisition
(:mod:`.acquisition`), label expansion and the simulated annotator (:mod:`.correction`),
superpixels (:mod:`.superpixels`), SAM (:mod:`.sam`, :mod:`.sam_masks`), the features model's
classifier (:mod:`.probabilities`), the per-pixel head (:mod:`.head`), label noise
(:mod:`.noise`) and metrics (:mod:`.metrics`).
"""
