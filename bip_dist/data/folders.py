"""Listing a class-per-folder image tree: the one walk that training (data.format: folder) and data_prep
both use, so the two give the same images the same labels.

Class indices follow the sorted class folder names of the *train* split, for every split: a val split
that lacks a class keeps the other classes' labels, and a val class that train lacks is an error.
Directory links inside a class folder are not followed (a loop such as `ln -s .. train/4/loop` would
otherwise list every image of the tree again, labelled 4); a class folder that is itself a link is
followed unless it leads back to the tree (the split folder or one above it).
"""

import os

EXTS = (".jpeg", ".jpg", ".png")


class FolderError(ValueError):
    """A malformed class-folder tree; one line naming the folder."""


def is_image(path):
    """True for the file names both readers take as images."""
    return path.lower().endswith(EXTS)


def class_names(root):
    """Sorted names of the class folders of `root` (a class folder may be a link to a folder)."""
    if not os.path.isdir(root):
        raise FolderError(f"{root}: image folder not found")
    return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))


def _leads_back(path, root_real):
    """Whether directory `path` really is `root_real` or a folder above it (walking it loops)."""
    real = os.path.realpath(path)
    return real == root_real or root_real.startswith(real.rstrip(os.sep) + os.sep)


def _images_under(d, links):
    """Sorted image paths under `d`, not descending into directory links (appended to `links`)."""
    out = []
    for dirpath, dirnames, files in os.walk(d):  # followlinks=False
        for name in dirnames:
            if os.path.islink(os.path.join(dirpath, name)):
                links.append(os.path.join(dirpath, name))
        dirnames.sort()
        out.extend(os.path.join(dirpath, f) for f in files if is_image(f))
    return sorted(out)


def list_images(root, classes=None):
    """(paths, labels, classes, links) of the tree `root`: labels index `classes` (default: its own class
    folders); `links` are the directory links left out. An unknown class folder raises FolderError."""
    found = class_names(root)
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise FolderError(f"{os.path.join(root, unknown[0])}: class folder {unknown[0]!r} is not among the "
                          f"{len(classes)} training classes ({len(unknown)} unknown in {root})")
    if not classes:
        raise FolderError(f"{root}: no class sub-folders")
    root_real, paths, labels, links = os.path.realpath(root), [], [], []
    for label, c in enumerate(classes):
        top = os.path.join(root, c)
        if not os.path.isdir(top):
            continue  # a split may lack a class; the others keep their labels
        if os.path.islink(top) and _leads_back(top, root_real):
            links.append(top)
            continue
        for p in _images_under(top, links):
            paths.append(p)
            labels.append(label)
    return paths, labels, list(classes), links


def links_note(root, links):
    """One line on the directory links left out of `root`, or None."""
    if not links:
        return None
    first = links[0]
    return (f"{root}: {len(links)} directory link(s) not followed, their images are not used (first: "
            f"{first} -> {os.readlink(first)})")
