#!/bin/bash
# Runs INSIDE the test VM (tests/vm/test_nfs_vm.py): installs Debian's NFS server into the VM's throw-away
# overlay, gives the VM a root filesystem the kernel can export, and runs the given command chrooted there.
#
#   nfs_root.sh DEBS_DIR COMMAND...
#
# - The .debs (nfs-kernel-server and libwrap0, downloaded on the host with `apt-get download`, never installed
#   there) are unpacked into the overlay root: not `dpkg-deb -x DEB /`, whose tar would replace the merged-usr
#   symlinks /bin, /lib, /sbin with directories; --keep-directory-symlink keeps them.  No maintainer script runs.
# - NFSv4 clients walk a pseudo-root from / down to each export, so / must be a filesystem nfsd can make file
#   handles for; the VM's / (overlayfs over 9p) is not.  A small ext4 image becomes the new /, every top-level
#   directory of the old one bound into it, except /srv, which stays on the ext4 (the homes go below it).
#   On a real server's ext4 or XFS root none of this is needed.
set -eu
DEBS=$1; shift
for deb in "$DEBS"/*.deb; do
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C / --keep-directory-symlink
done
touch /etc/exports  # exportfs reads it even when the exports are in /etc/exports.d (Debian ships it)

R=/run/nfsroot
mkdir -p /run/nfsimg "$R"
truncate -s 64M /run/nfsimg/root.img
mkfs.ext4 -q -F /run/nfsimg/root.img
mount -o loop /run/nfsimg/root.img "$R"
for entry in /*; do
  name=${entry#/}
  if [ -L "$entry" ]; then cp -P "$entry" "$R/$name"; continue; fi
  [ -d "$entry" ] || continue
  mkdir -p "$R/$name"
  case $name in
    proc) mount -t proc proc "$R/proc" ;;
    srv|lost+found) ;;
    *) mount --rbind "$entry" "$R/$name" ;;
  esac
done
exec chroot "$R" /usr/bin/env --chdir="$PWD" "$@"
