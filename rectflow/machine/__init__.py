"""What the run gets from the machine: threads (:mod:`.threads`), a batch that fits in memory
(:mod:`.batchfit`) and the Accelerate handle (:mod:`.accelerator`)."""
