"""Bag-of-words image retrieval (the HardNet Oxford5k / Paris6k table), in parts:

- :mod:`.ap`: the official Oxford AP (compute_ap.cpp: trapezoid, junk skipped) and revisitop's
  Easy / Medium / Hard protocols;
- :mod:`.vocabulary`: k-means vocabularies with faiss, cached by content; hard assignment;
- :mod:`.index`: tf-idf weighting, L2 normalisation and the scipy.sparse inverted file;
- :mod:`.verify`: spatial verification (affine hypotheses from single correspondences of local
  frames, scored by inliers, the best refined) and average query expansion.

The benchmark that runs them is :mod:`desc_bench.bench.benchmarks.bow_retrieval`.
"""
