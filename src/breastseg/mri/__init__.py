"""MRI read-outs: the degree of background parenchymal enhancement (:mod:`.bpe_degree`)."""
