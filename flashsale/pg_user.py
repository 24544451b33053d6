"""Who runs Postgres: ourselves, or, when we are root, the unprivileged `pgserver` system user.

Postgres refuses to run as root, so as root the cluster's folders belong to that user and every
folder above them must let it pass (pgserver's own helpers do the same).
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from pathlib import Path
from typing import Any

from flashsale.procs import EmbeddedServerError

User = pwd.struct_passwd
SERVICE_USER = "pgserver"  # shared with the pgserver package, so one system user serves both
_TRAVERSE = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH


def service_user() -> User | None:
    """None when we are not root (run as ourselves); else the system user, created if missing."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    useradd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    try:
        subprocess.run(
            [*useradd, SERVICE_USER],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EmbeddedServerError(
            f"running as root and could not create the {SERVICE_USER!r} user Postgres needs: {exc}"
        ) from exc
    return pwd.getpwnam(SERVICE_USER)


def run_as(user: User | None) -> dict[str, Any]:
    """subprocess keyword arguments that drop root for the service user."""
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def grant_access(*paths: Path) -> None:
    """Let the service user reach these folders and use the binaries under the first."""
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
        for folder in (path, *path.parents):
            mode = folder.stat().st_mode
            if mode & _TRAVERSE != _TRAVERSE:
                folder.chmod(mode | _TRAVERSE)


def make_private_dir(path: Path, user: User | None) -> None:
    """A 0700 folder owned by whoever runs Postgres, as initdb and the socket dir require."""
    path.mkdir(parents=True, exist_ok=True)
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(0o700)
