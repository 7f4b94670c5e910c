"""A FUSE file system that mirrors a directory and can hang, as a hard NFS
mount does when its server goes away: while the control file exists, every
request under the mount blocks in the kernel until the file is removed.

    hangfs.py SOURCE MOUNTPOINT CONTROL

Used by tests/integration/hung.rs: what the exporter reads through such a
mount (sysfs, procfs, the web config, a socket) must not stall anything else.
"""

import errno
import os
import sys
import time

from fusepy import FUSE, FuseOSError, Operations


class Mirror(Operations):
    def __init__(self, source, control):
        self.source = source
        self.control = control

    def _path(self, path):
        # A hung server: nothing is answered, not even a lookup.
        while os.path.exists(self.control):
            time.sleep(0.05)
        return os.path.join(self.source, path.lstrip("/"))

    def _call(self, f, *args):
        try:
            return f(*args)
        except OSError as e:
            raise FuseOSError(e.errno or errno.EIO)

    def getattr(self, path, fh=None):
        st = self._call(os.lstat, self._path(path))
        keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size",
                "st_atime", "st_mtime", "st_ctime", "st_ino")
        return {k: getattr(st, k) for k in keys}

    def readdir(self, path, fh):
        return [".", ".."] + self._call(os.listdir, self._path(path))

    def readlink(self, path):
        return self._call(os.readlink, self._path(path))

    def open(self, path, flags):
        return self._call(os.open, self._path(path), flags & ~os.O_NONBLOCK)

    def read(self, path, size, offset, fh):
        self._path(path)
        return self._call(os.pread, fh, size, offset)

    def release(self, path, fh):
        return os.close(fh)


if __name__ == "__main__":
    source, mountpoint, control = sys.argv[1:4]
    FUSE(Mirror(os.path.realpath(source), control), mountpoint,
         foreground=True, nothreads=False, allow_other=True, ro=True,
         use_ino=True, attr_timeout=0, entry_timeout=0)
