"""The one generator of embedded (download-free) datasets, in reusable parts.

Every part is a function of a random generator (or seed) and arrays, with no file or dataset
knowledge, so that new generators (brown-synth, pose-synth, retrieval-synth, ...) reuse them:

- :mod:`.sources`: pictures bundled with scikit-image (offline), gray/RGB conversion, crops, resizing.
- :mod:`.seeds`: stable per-sequence random streams.
- :mod:`.photometry`: photometric changes (illumination field and sensor noise; exposure change).
- :mod:`.geometry`: random homographies (viewpoint changes, camera views of a larger picture),
  applying them to points and images.
- :mod:`.frames`: detected keypoint frames, affine jitter of frames and its measured overlap.
- :mod:`.patches`: sampling patches through frames (anti-aliased by a Gaussian pyramid).
- :mod:`.writers`: the on-disk layouts (HPatches patch files, image sequences with homographies).
- :mod:`.splits`: HPatches-style train/test splits.

Dataset definitions built from them: :mod:`.hpatches_synth` (``hpatches-synth``, patches) and
:mod:`.seq_synth` (``hpatches-seq-synth``, image pairs). Their bytes are pinned by a test
(tests/datasets/test_synth_bytes.py); a change to any part that moves them must bump the
generator's version string.
"""
