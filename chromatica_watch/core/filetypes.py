"""What kind of file a path names, by name and by mode, without opening it: stdlib only, so that the
scanner (stat-only) and the decoder give the same words without the scanner importing a decoder.

Only regular files are read. Symbolic links inside a watched folder are not followed, so no photo is
indexed twice through a link back into the folder: add the target as a root to index it.
"""

from __future__ import annotations

import errno
import os
import stat

# Decoded by OpenCV (Pillow where OpenCV cannot): always available. An animation (GIF, APNG, animated
# WebP) is indexed by its first frame; an MPO (a camera's multi-picture JPEG) by its first picture.
BASIC_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".png", ".apng", ".bmp", ".dib",
                              ".tif", ".tiff", ".webp", ".gif"})
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif"})  # pillow-heif
AVIF_EXTENSIONS = frozenset({".avif"})  # Pillow's own AVIF support (libavif)
JXL_EXTENSIONS = frozenset({".jxl"})  # pillow-jxl-plugin (the `jxl` extra)
# Camera RAW, through rawpy (LibRaw; the `raw` extra): the embedded preview, else a half-size demosaic.
RAW_EXTENSIONS = frozenset({".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf",
                            ".orf", ".rw2", ".rwl", ".pef", ".srw", ".x3f", ".3fr", ".fff", ".iiq", ".erf",
                            ".mef", ".mos", ".mrw", ".kdc", ".dcr", ".gpr"})
IMAGE_EXTENSIONS = BASIC_EXTENSIONS | HEIF_EXTENSIONS | AVIF_EXTENSIONS | JXL_EXTENSIONS | RAW_EXTENSIONS


def extension(name: str | bytes) -> str:
    """The lower-case extension of a file name ('.heic'), or ''."""
    return os.path.splitext(os.fsdecode(name))[1].lower()


def has_image_extension(name: str) -> bool:
    return extension(name) in IMAGE_EXTENSIONS


# Why a file that is not a regular file is never read, by its kind (the scanner gives the same words).
_SPECIAL_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                  (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
SYMLINK_NOT_FOLLOWED = "symbolic link not followed (add its target as a root to index it)"
SYMLINK_LOOP = "symlink loop"
BROKEN_SYMLINK = "broken symlink"


def special_file_reason(st_mode: int) -> str | None:
    """Why a file of this mode (from stat, lstat or fstat) is not read; None for a regular file.

    'not a regular file: a named pipe (FIFO)' (also '... a socket', '... a character device',
    '... a block device', '... a folder'); a symbolic link's mode (from lstat) gives
    SYMLINK_NOT_FOLLOWED, and `symlink_reason` tells loops and dangling links apart.
    """
    if stat.S_ISREG(st_mode):
        return None
    if stat.S_ISLNK(st_mode):
        return SYMLINK_NOT_FOLLOWED
    for is_kind, what in _SPECIAL_KINDS:
        if is_kind(st_mode):
            return f"not a regular file: {what}"
    return f"not a regular file: an unknown kind of file (type {stat.S_IFMT(st_mode):#o})"


def symlink_reason(path: str) -> str:
    """Why the symbolic link at `path` is not read when links are not followed: 'symlink loop' when
    it loops, 'broken symlink' when its target does not exist, else SYMLINK_NOT_FOLLOWED."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return SYMLINK_LOOP
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return BROKEN_SYMLINK
    return SYMLINK_NOT_FOLLOWED


# What a camera writes beside a RAW in RAW+JPEG (or RAW+HEIF) mode: the same picture, developed.
DEVELOPED_EXTENSIONS = frozenset({".jpg", ".jpeg", ".heic", ".heif", ".hif"})


def sidecar_key(root: str, path: bytes) -> tuple[str, bytes, bytes] | None:
    """What groups a camera's RAW with the JPEG or HEIF it wrote beside it: (root, folder, name without
    its extension, lower-cased: IMG_0001.CR3 and IMG_0001.JPG), or None for a file of another kind.
    Only a group holding a RAW is a RAW+JPEG pair; two JPEGs with one stem are not (see `group_sidecars`)."""
    suffix = extension(path)
    if suffix not in RAW_EXTENSIONS and suffix not in DEVELOPED_EXTENSIONS:
        return None
    folder, name = os.path.split(path)
    return root, folder, name[: len(name) - len(suffix)].lower()


def group_sidecars(ranked: list[tuple[str, bytes]]) -> list[list[int]]:
    """Positions in `ranked` (best first) grouped as shown once: a RAW and the JPEG or HEIF files of its
    name in its folder form one group, led by whichever ranks best; every other file is its own group.
    Groups are in the order of their leaders."""
    keys = [sidecar_key(root, path) for root, path in ranked]
    has_raw = {key for key, (_, path) in zip(keys, ranked, strict=True)
               if key is not None and extension(path) in RAW_EXTENSIONS}
    groups: list[list[int]] = []
    leader: dict[tuple[str, bytes, bytes], int] = {}
    for position, key in enumerate(keys):
        if key is None or key not in has_raw:
            groups.append([position])
        elif key in leader:
            groups[leader[key]].append(position)
        else:
            leader[key] = len(groups)
            groups.append([position])
    return groups
