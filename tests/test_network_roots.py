"""A root on a network or FUSE filesystem: what another machine writes there sends no inotify event, so
the daemon rescans such a root (stat only) on a short interval, and says so. Tested on a real FUSE mount
(bindfs), the mount table read as the daemon reads it, and plain values for the rules."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from chromatica_watch.core import mounts
from chromatica_watch.core.mounts import Mount, WatchPlan, mount_of, parse_mountinfo, unseen_by_inotify, watch_plan
from tests.conftest import mounted_bindfs, wait_until
from tests.daemon_harness import DaemonEnv
from tests.test_relocate import write_photos

MOUNTINFO = r"""22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:40 / /mnt/nas rw,relatime shared:5 master:2 - nfs4 nas:/export/photos rw,vers=4.2
31 22 0:41 / /home/me/My\040Drive rw,nosuid - fuse.rclone gdrive: rw,user_id=1000
32 22 0:42 / /media/usb rw - fuseblk /dev/sdb1 rw
33 30 0:43 / /mnt/nas/local rw - ext4 /dev/sdc1 rw
34 22 0:44 / /mnt/nas rw - tmpfs tmpfs rw
this line does not parse
"""


def test_the_mount_table_is_read_with_escapes_and_optional_fields() -> None:
    table = parse_mountinfo(MOUNTINFO)
    assert [m.point for m in table] == ["/", "/mnt/nas", "/home/me/My Drive", "/media/usb", "/mnt/nas/local",
                                        "/mnt/nas"]
    assert table[1] == Mount("/mnt/nas", "nfs4", "nas:/export/photos")
    assert mount_of("/home/me/My Drive/2024", table) == table[2]
    assert mount_of("/mnt/nas/local/x", table) == table[4]  # the deepest mount point
    assert mount_of("/mnt/nas/x", table) == table[5]  # a later mount on the same point hides the earlier
    assert mount_of("/mnt/nasty", table) == table[0]  # a prefix of the name is not a folder above it


def test_which_filesystems_inotify_cannot_see() -> None:
    for fstype in ("nfs", "nfs4", "cifs", "smb3", "9p", "fuse", "fuse.sshfs", "fuse.rclone", "virtiofs", "ceph"):
        assert unseen_by_inotify(fstype), fstype
    for fstype in ("ext4", "btrfs", "xfs", "tmpfs", "overlay", "fuseblk", "vfat"):
        assert not unseen_by_inotify(fstype), fstype


def test_a_roots_plan_follows_its_filesystem_and_the_config() -> None:
    nfs, ext4 = Mount("/mnt/nas", "nfs4", "nas:/p"), Mount("/", "ext4", "/dev/sda1")
    plan = watch_plan(nfs, None, 30.0)
    assert plan.rescan == 30.0 and plan.reason is not None and "nfs4 from nas:/p" in plan.reason
    assert watch_plan(ext4, None, 30.0) == WatchPlan() and watch_plan(None, None, 30.0) == WatchPlan()
    assert watch_plan(nfs, None, 0.0) == WatchPlan()  # 0: network roots like local ones
    assert watch_plan(nfs, "native", 30.0) == WatchPlan()
    assert watch_plan(ext4, "rescan", 45.0).rescan == 45.0 and watch_plan(nfs, "120", 30.0).rescan == 120.0
    assert "every 30 s" in watch_plan(nfs, None, 30.0).describe() and WatchPlan().describe() == "events"


def test_this_machines_mount_table_names_a_bindfs_mount(tmp_path: Path) -> None:
    with mounted_bindfs(tmp_path / "share", tmp_path / "nas") as mnt:
        found = mounts.filesystem_of(str(mnt / "."))
        assert found is not None and found.point == str(mnt) and unseen_by_inotify(found.fstype)
    found = mounts.filesystem_of(str(tmp_path))
    assert found is not None and not unseen_by_inotify(found.fstype)


def roots_json(env: DaemonEnv) -> list[dict[str, object]]:
    proc = env.cli("roots", "--json")
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout))


def search_paths(env: DaemonEnv) -> set[str]:
    proc = env.cli("search", "--color", "#808080", "--color", "#20a0ff", "-k", "50", "--json")
    assert proc.returncode == 0, proc.stderr
    return {m["path"] for m in json.loads(proc.stdout)}


def test_photos_another_machine_writes_to_a_share_are_found_by_the_rescan(daemon_env: DaemonEnv,
                                                                         tmp_path: Path) -> None:
    env, share = daemon_env, tmp_path / "share"
    write_photos(share, ["old.jpg"])
    with mounted_bindfs(share, tmp_path / "nas") as nas:
        env.write_config(roots=[str(nas)], network_rescan_interval=1.0)
        env.start()
        wait_until(lambda: env.idle_with(1), timeout=60)
        listed = roots_json(env)
        assert "rescan every 1 s" in str(listed[0]["watch"]) and "fuse" in str(listed[0]["watch"])
        human = env.cli("status")
        assert "and rescanned every 1 s (on fuse from" in human.stdout, human.stdout
        assert "rescanned (stat only) every 1 s" in env.log()

        write_photos(share, ["from-the-nas.jpg"], first_seed=3)  # the other side: no event here
        (nas / "sub").mkdir()
        shutil.copy(share / "old.jpg", nas / "sub" / "through-the-mount.jpg")  # this machine: events
        wait_until(lambda: env.idle_with(3), timeout=30)
        assert search_paths(env) == {str(nas / "old.jpg"), str(nas / "from-the-nas.jpg"),
                                     str(nas / "sub" / "through-the-mount.jpg")}
        (share / "old.jpg").unlink()  # gone on the other side
        wait_until(lambda: env.idle_with(2), timeout=30)
        assert "Traceback" not in env.log()
        assert env.stop() == 0


@pytest.mark.parametrize("how", ["root_watch", "watcher"])
def test_a_share_set_to_native_is_not_rescanned(daemon_env: DaemonEnv, tmp_path: Path, how: str) -> None:
    """The premise of the test above, and the setting that turns it off: on the FUSE mount, a file written
    on the other side is not seen from events alone (while one written through the mount is)."""
    env, share = daemon_env, tmp_path / "share"
    share.mkdir()
    with mounted_bindfs(share, tmp_path / "nas") as nas:
        setting = {"root_watch": [f"{nas}=native"]} if how == "root_watch" else {"watcher": "native"}
        env.write_config(roots=[str(nas)], network_rescan_interval=1.0, **setting)
        env.start()
        wait_until(lambda: env.idle_with(0), timeout=60)
        assert roots_json(env)[0]["watch"] == "events"
        write_photos(share, ["unseen.jpg"])
        write_photos(nas, ["seen.jpg"], first_seed=5)
        wait_until(lambda: env.idle_with(1), timeout=30)
        wait_until(lambda: env.idle_with(1) and env.status().get("counts", {}).get("queued") == 0, timeout=5)
        assert search_paths(env) == {str(nas / "seen.jpg")}
        assert env.stop() == 0
