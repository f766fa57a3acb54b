"""Every access to the FiftyOne database and to the files alc-fiftyone writes.

- :mod:`.db`: the only module that touches FiftyOne's private APIs;
- :mod:`.files`: reading images and masks with validation, writing masks copy-on-write;
- :mod:`.fields`: the data model's field names, classes and ignore value, current labels;
- :mod:`.info`: ``dataset.info["alc"]``, updated atomically key by key;
- :mod:`.roles`: what each field holds, and the rule every step asks before writing one;
- :mod:`.masks`: one mask per sample into a Segmentation field, in bulk and safely;
- :mod:`.datasets`: datasets built under a temporary name, swapped in when complete;
- :mod:`.changes`: in-process notices of changed queries (for the review caches);
- :mod:`.faults`: database failures as clear errors, per-sample failure records;
- :mod:`.cleanup`: removal of the mask files nothing refers to.
"""
