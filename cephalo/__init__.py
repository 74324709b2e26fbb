"""The ``cephalo`` command line: train / eval / convert / predict / bench over the sdk, train and convert stages."""
