"""Which filesystem a folder is on, and whether inotify sees the changes made to it.

inotify reports what this machine's kernel does to a file. On a network or FUSE filesystem (NFS, SMB,
sshfs, rclone, bindfs, 9p, virtiofs, ...) a photo written by another machine, the NAS itself or the FUSE
daemon's backing store goes through no local system call: no event, ever. Such a root is still watched
(what this machine writes there is seen at once) and compared with the catalog by stat-only rescans on a
short interval. Syncthing and Baloo decide the same way, from the filesystem type in the mount table.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

MOUNTINFO = "/proc/self/mountinfo"

# Filesystems whose content other machines (or a daemon's backing store) change behind the kernel's back.
REMOTE_TYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "9p", "afs", "coda", "ceph", "glusterfs", "lustre",
    "gpfs", "beegfs", "ocfs2", "gfs2", "davfs", "virtiofs", "vboxsf", "vmhgfs", "fuse",
})
# FUSE filesystems on a local block device (NTFS, exFAT): nothing but this kernel writes them.
LOCAL_FUSE = frozenset({"fuseblk"})

_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    point: str  # where it is mounted
    fstype: str  # "ext4", "nfs4", "fuse.sshfs", ...
    source: str  # what is mounted ("server:/export", "/dev/sda1", the FUSE daemon's name)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of /proc/self/mountinfo's text (fields: id, parent, major:minor, root, mount point,
    options, optional fields up to "-", then type, source, super options); lines that do not parse are
    left out."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        dash = fields.index("-", 6)
        if len(fields) < dash + 3:
            continue
        mounts.append(Mount(_unescape(fields[4]), _unescape(fields[dash + 1]), _unescape(fields[dash + 2])))
    return mounts


def _unescape(field: str) -> str:
    """The kernel writes a space, tab, newline and backslash in a path as \\040, \\011, \\012, \\134."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def mount_of(path: str, mounts: Sequence[Mount]) -> Mount | None:
    """The mount holding `path` (a real path): the last mounted of those with the longest mount point
    above it (a later mount on the same point hides the earlier one)."""
    best: Mount | None = None
    for mount in mounts:
        point = mount.point.rstrip("/") + "/"
        if (path + "/").startswith(point) and (best is None or len(mount.point) >= len(best.point)):
            best = mount
    return best


def unseen_by_inotify(fstype: str) -> bool:
    """Whether changes to a filesystem of this type can be made without an event reaching this machine."""
    return fstype not in LOCAL_FUSE and (fstype in REMOTE_TYPES or fstype.startswith("fuse."))


def filesystem_of(path: str) -> Mount | None:
    """The mount holding a folder (its real path), from this process's mount table; None if unknown."""
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as f:
            mounts = parse_mountinfo(f.read())
    except OSError:
        return None
    return mount_of(os.path.realpath(path), mounts)


@dataclass(frozen=True)
class WatchPlan:
    """How a root is kept current beside its inotify watch."""

    rescan: float | None = None  # seconds between stat-only rescans; None: its events alone
    reason: str | None = None  # why it is rescanned

    def describe(self) -> str:
        return "events" if self.rescan is None else f"events + a rescan every {self.rescan:g} s ({self.reason})"


def watch_plan(mount: Mount | None, override: str | None, network_interval: float) -> WatchPlan:
    """A root's plan: as `root_watch` sets it ("native": events alone; "rescan": every `network_interval`
    seconds; a number: every so many seconds), else rescanned every `network_interval` seconds when its
    filesystem is one whose changes inotify cannot see (0: never)."""
    if override == "native":
        return WatchPlan()
    if override is not None:
        every = network_interval if override == "rescan" else float(override)
        return WatchPlan(every or None, "set in root_watch")
    if mount is None or not unseen_by_inotify(mount.fstype) or network_interval <= 0:
        return WatchPlan()
    return WatchPlan(network_interval, f"on {mount.fstype} from {mount.source}, where changes made elsewhere "
                                       "send no event here")
