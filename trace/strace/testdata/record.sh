#!/bin/sh
# Rebuilds sample.strace: builds sample.c, lays out its files under ROOT
# and records it with the strace command in docs/trace-format.md.
# Needs a C compiler and strace (apt-get install -y gcc strace).
# After re-recording, TestImportRecordedSample must pass unchanged: the
# events it asserts depend on the program, not on the recording.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=/tmp/jitfs-strace-sample
rm -rf "$root"
mkdir -p "$root/show/sub"
cc -O1 -pthread -o "$root/sample" "$here/sample.c"
head -c 10000 /dev/zero | tr '\0' a >"$root/show/a.exr"
head -c 8192 /dev/zero | tr '\0' b >"$root/show/b.vdb"
head -c 3000 /dev/zero | tr '\0' c >"$root/show/sub/c.png"
head -c 100 /dev/zero | tr '\0' q >"$root/show/$(printf 'q"uote\\d \303\251.txt')"
ln -s a.exr "$root/show/link"
cd "$root"
strace -f -ttt -T -y -s 0 -qq -o "$here/sample.strace" \
  -e trace=openat,open,creat,stat,lstat,fstat,newfstatat,statx,access,faccessat,faccessat2,readlink,readlinkat,read,pread64,readv,preadv,preadv2,mmap,lseek,close,dup,dup2,dup3,fcntl,getdents64,execve,chdir,fchdir,clone,clone3,fork,vfork \
  ./sample
