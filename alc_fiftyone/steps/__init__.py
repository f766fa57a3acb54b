"""The steps of the correction loop, each over a collection: superpixels, SAM pseudo labels,
ranking (the acquisition), propagation of answers, evaluation, the simulated loop, and shards
for delegated workers."""
