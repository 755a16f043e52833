"""A throwaway PostgreSQL server for the tests: initdb into a temporary folder (as the `postgres`
user when running as root, since PostgreSQL refuses to run as root), on a free port on 127.0.0.1,
removed afterwards.

As a program (used by scripts/test):
    python3 tests/python/pg_cluster.py start   # prints shell exports: HERALD_TEST_POSTGRES_URL, HERALD_PG_CLUSTER_DIR
    python3 tests/python/pg_cluster.py stop DIR
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def find_bin_dir():
    """The newest PostgreSQL server's bin folder, or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if candidates:
        return os.path.dirname(candidates[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    """One PostgreSQL server in a temporary folder. `start()`, `stop()`, `restart()`, `remove()`."""

    def __init__(self, directory=None, port=None):
        self.bin = find_bin_dir()
        if self.bin is None:
            raise RuntimeError("no PostgreSQL server binaries found (install postgresql)")
        self.as_postgres = os.geteuid() == 0
        if directory is None:
            directory = tempfile.mkdtemp(prefix="herald-pg-")
            os.chmod(directory, 0o755)
            if self.as_postgres:
                entry = pwd.getpwnam("postgres")
                os.chown(directory, entry.pw_uid, entry.pw_gid)
        self.directory = directory
        self.data = os.path.join(directory, "data")
        self.port = port or free_port()
        self.user = "postgres"

    @property
    def url(self):
        return f"postgres://{self.user}@127.0.0.1:{self.port}/postgres?sslmode=disable"

    def _run(self, *args, check=True):
        command = [os.path.join(self.bin, args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)

    def init(self):
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", self.user, "--no-sync", "-E", "UTF8",
                  "--locale=C.UTF-8")
        return self

    def start(self):
        if not os.path.exists(os.path.join(self.data, "PG_VERSION")):
            self.init()
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.directory} "
                   "-c max_connections=200 -c shared_buffers=128MB -c fsync=on")
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", os.path.join(self.directory, "server.log"),
                  "-w", "-t", "60", "start")
        return self

    def stop(self, mode="fast"):
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop", check=False)

    def restart(self, mode="fast"):
        self.stop(mode)
        self.start()

    def remove(self):
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("PostgreSQL did not become ready")

    def psql(self, sql, database="postgres"):
        result = self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", database,
                           "-At", "-v", "ON_ERROR_STOP=1", "-c", sql)
        return result.stdout.strip()


def main(argv):
    if len(argv) >= 2 and argv[1] == "start":
        cluster = PgCluster().start()
        print(f"export HERALD_TEST_POSTGRES_URL='{cluster.url}'")
        print(f"export HERALD_PG_CLUSTER_DIR='{cluster.directory}'")
        return 0
    if len(argv) >= 3 and argv[1] == "stop":
        cluster = PgCluster(directory=argv[2], port=1)
        cluster.remove()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
