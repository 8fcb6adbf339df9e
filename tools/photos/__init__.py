"""Content photos that can be had offline, for training and evaluating styles here.

    python -m tools.photos fetch DEBS               # apt-get download the Debian packages
    python -m tools.photos collect DEST --debs DEBS [--skimage-wheel WHEEL] [--max-side 512]
    python -m tools.photos sheet DEST               # contact sheets of what was kept, to look at

``collect`` reads the photos that scikit-image's wheel and a few Debian packages ship
(``sources.SOURCES``; docs/design/photos.md says why these and what each holds), keeps
the colour photographs (greyscale images, drawings, renders, logos, screenshots, tiny
images and near-duplicates are left out: a heuristic filter, then the hand-made skip
list ``skip.txt`` written after looking at every candidate), and writes them under
``DEST/train/`` (JPEG) and ``DEST/holdout/`` (PNG, ``holdout.txt``: kept out of
training, a spread of subjects). ``DEST/manifest.csv`` lists every kept photo (file,
split, source package, original path, licence), ``DEST/skipped.csv`` every file left
out with the reason, and ``DEST/licences/`` holds each package's copyright file. A
second run rebuilds both folders. On a connected machine, train on COCO instead
(``python -m tools.coco DEST``).

Debian's ``mate-backgrounds`` and the sample images of the scikit-learn and matplotlib
wheels are reserved for outside evaluation: ``reserved.check_not_reserved`` refuses
them anywhere.

Modules: ``reserved`` (that rule), ``formats`` (Qt resource bundles, .deb packages,
Debian copyright files), ``lists`` (the hand-made lists, read from the ``.txt`` files
beside the code), ``sources`` (what each package offers, and ``fetch``), ``curate``
(the filters and ``collect``), ``cli`` (the command line).
"""
