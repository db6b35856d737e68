#!/usr/bin/env python3
"""Builds a ClamAV database container the way sigtool lays it out, for tests:
a 512-byte header then a gzip'd tar (.cvd) or the plain tar (.cld).

  make-cvd.py OUT MEMBERS.json [--cld] [--corrupt-md5]
MEMBERS.json maps member names to their text."""
import gzip, hashlib, io, json, sys, tarfile

out, spec = sys.argv[1], json.load(open(sys.argv[2]))
cld, corrupt = "--cld" in sys.argv, "--corrupt-md5" in sys.argv
raw = io.BytesIO()
with tarfile.open(fileobj=raw, mode="w") as t:
    for name, text in sorted(spec.items()):
        b = text.encode()
        info = tarfile.TarInfo(name)
        info.size = len(b)
        t.addfile(info, io.BytesIO(b))
body = raw.getvalue() if cld else gzip.compress(raw.getvalue(), mtime=0)
md5 = "0" * 32 if corrupt else hashlib.md5(body).hexdigest()
head = ("ClamAV-VDB:29 Nov 2026 08-00 +0000:27100:%d:210:%s:dsig-not-checked:builder:1795939200" % (len(spec), md5)).encode()
with open(out, "wb") as f:
    f.write(head.ljust(512, b" ") + body)
