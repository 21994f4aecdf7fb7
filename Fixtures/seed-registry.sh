#!/usr/bin/env bash
# Puts images into a registry with skopeo, digests unchanged (--preserve-digests), lists with
# every image they name (--all):
#
#   seed-registry.sh [--creds USER:PASSWORD] [--cert-dir DIR] HOST:PORT IMAGES
#   seed-registry.sh [--creds USER:PASSWORD] [--cert-dir DIR] HOST:PORT LAYOUT:TAG NAME:TAG
#
# The first form pushes the import tests' images. IMAGES is the directory they make
# (Fixtures/make-oci-images.sh, then Fixtures/oci-forms.py's platforms and manifest-list); when
# it does not exist it is made here (that needs root). It pushes
#   lstore/base:latest           layout:base    one layer
#   lstore/child:latest          layout:child   three layers: whiteouts, an opaque /etc
#   lstore/child:zstd            zstd:child     the same with zstd layers
#   lstore/system:latest         layout:system  a /rootfs inside the image
#   lstore/platforms:latest      platforms:child      an OCI index: this machine's child, base as linux/arm64
#   lstore/manifest-list:latest  manifest-list:child  the same as a Docker manifest list
# The second form pushes the one tag TAG of the OCI layout LAYOUT as NAME:TAG. A tag whose
# document is a Docker manifest list or manifest goes through a dir: copy of it, as skopeo's
# oci: transport refuses those media types.
#
# Without --cert-dir the registry is reached over plain HTTP; with it over HTTPS, trusting the
# CA certificates (*.crt) in DIR (registry.sh's DIR/certs). Prints one line per image pushed:
# NAME:TAG DIGEST (the digest of its manifest or list).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage() {
	echo "usage: seed-registry.sh [--creds USER:PASSWORD] [--cert-dir DIR] HOST:PORT IMAGES|LAYOUT:TAG NAME:TAG" >&2
	exit 2
}
dest=(--dest-tls-verify=false)
creds=()
while [ $# -gt 0 ]; do
	case $1 in
	--creds)
		[ $# -ge 2 ] || usage
		creds=(--dest-creds "$2")
		shift 2
		;;
	--cert-dir)
		[ $# -ge 2 ] || usage
		dest=(--dest-cert-dir "$2")
		shift 2
		;;
	--*) usage ;;
	*) break ;;
	esac
done
[ $# -eq 2 ] || [ $# -eq 3 ] || usage
host=$1
case $host in
*:*) ;;
*)
	echo "seed-registry.sh: $host: not HOST:PORT" >&2
	exit 2
	;;
esac

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# Copies tag $2 of the OCI layout $1 to $host/$3 (and every image of a list); prints "$3 DIGEST".
push() {
	local source=$1 tag=$2 target=$3 from media
	[ -f "$source/index.json" ] || {
		echo "seed-registry.sh: $source: not an OCI layout (no index.json)" >&2
		exit 1
	}
	media=$(python3 -c 'import json, sys
for m in json.load(open(sys.argv[1]))["manifests"]:
    if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == sys.argv[2]:
        print(m.get("mediaType", ""))' "$source/index.json" "$tag")
	from=oci:$source:$tag
	case $media in
	application/vnd.docker.*)
		rm -rf "$scratch/dir"
		python3 "$here/oci-forms.py" dir "$source" "$tag" "$scratch/dir"
		from=dir:$scratch/dir
		;;
	esac
	skopeo copy -q --all --preserve-digests --digestfile "$scratch/digest" "${dest[@]}" "${creds[@]}" \
		"$from" "docker://$host/$target"
	echo "$target $(cat "$scratch/digest")"
}

if [ $# -eq 3 ]; then
	case $2 in
	*:*) ;;
	*)
		echo "seed-registry.sh: $2: not LAYOUT:TAG" >&2
		exit 2
		;;
	esac
	push "${2%:*}" "${2##*:}" "$3"
	exit 0
fi

images=$2
if [ ! -d "$images/layout" ]; then
	"$here/make-oci-images.sh" "$images" >/dev/null
	(
		cd "$images"
		python3 "$here/oci-forms.py" platforms layout child base platforms
		python3 "$here/oci-forms.py" platforms layout child base manifest-list --docker
	)
fi
push "$images/layout" base lstore/base:latest
push "$images/layout" child lstore/child:latest
[ ! -d "$images/zstd" ] || push "$images/zstd" child lstore/child:zstd
push "$images/layout" system lstore/system:latest
[ ! -d "$images/platforms" ] || push "$images/platforms" child lstore/platforms:latest
[ ! -d "$images/manifest-list" ] || push "$images/manifest-list" child lstore/manifest-list:latest
