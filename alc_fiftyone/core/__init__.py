"""Array-level engine of alc-fiftyone: numpy/torch only, no FiftyOne import.

Every function here works on one image's arrays (probabilities, superpixel id maps, label
maps) so that it can be tested and benchmarked without a database.
"""
