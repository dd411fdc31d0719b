#!/bin/sh
# install-config.sh EXAMPLE SYSCONFDIR: meson's install script for the
# configuration. It installs EXAMPLE as SYSCONFDIR/s3mond/s3mond.conf only
# when no s3mond.conf is there: an administrator's configuration is never
# overwritten by a later `meson install` (meson's install_data() always
# overwrites). A package builds with -Dinstall_config=conffile instead
# (debian/rules): the file is installed as is and dpkg treats it as a conffile.
set -eu

example=$1
dir="${DESTDIR:-}$2/s3mond"
conf="$dir/s3mond.conf"

if [ -n "${MESON_INSTALL_DRY_RUN:-}" ]; then
	exit 0
fi
if [ -e "$conf" ] || [ -L "$conf" ]; then
	[ -n "${MESON_INSTALL_QUIET:-}" ] || echo "Keeping $conf (the example is in the data directory)"
	exit 0
fi
install -d -m 0755 "$dir"
install -m 0644 "$example" "$conf"
[ -n "${MESON_INSTALL_QUIET:-}" ] || echo "Installing $example to $conf"
