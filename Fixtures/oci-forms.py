#!/usr/bin/env python3
"""Writes the image forms the import tests need that no tool here makes, by hand from the specs
(opencontainers/image-spec image-layout.md, manifest.md, image-index.md; moby docker-image-spec
v1.2 for manifest.json). Standard library only; it shares no code with lstore.

  oci-forms.py docker25 LAYOUT TAG OUT.tar
      Docker 25+'s `docker save`: an OCI layout with uncompressed layers, plus manifest.json
  oci-forms.py containerd LAYOUT TAG OUT.tar
      containerd's image store export: index.json names a nested index that names the manifest
  oci-forms.py platforms LAYOUT TAG OTHER OUT [--docker]
      a layout whose tag TAG names an index of two images: TAG for this machine's platform and
      OTHER relabelled linux/arm64 (or, with --docker, the same as a Docker schema 2 manifest list)
  oci-forms.py dir LAYOUT TAG OUT
      TAG (with every image of a list) as a containers/image `dir:` directory, for skopeo to copy
      a Docker manifest list or manifest, whose media types its `oci:` transport refuses
  oci-forms.py tiny OUT
      the layout of spec/oci.md's test vector: one small layer, tagged "tiny", with a history
  oci-forms.py hostile CASE OUT
      an OCI layout tagged "bad" whose one layer or document is hostile in the way CASE says
      (see HOSTILE below)
"""
import gzip
import hashlib
import io
import json
import os
import platform
import sys
import tarfile

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Layout:
    """An OCI image layout being read or written: blobs by digest and index.json."""

    def __init__(self, path):
        self.path = path

    def blob_path(self, d):
        return os.path.join(self.path, "blobs", "sha256", d.split(":", 1)[1])

    def read(self, d):
        with open(self.blob_path(d), "rb") as f:
            return f.read()

    def json(self, d):
        return json.loads(self.read(d))

    def write(self, data):
        d = digest(data)
        os.makedirs(os.path.dirname(self.blob_path(d)), exist_ok=True)
        with open(self.blob_path(d), "wb") as f:
            f.write(data)
        return {"digest": d, "size": len(data)}

    def write_json(self, value, media_type):
        return dict(mediaType=media_type, **self.write(json.dumps(value, sort_keys=True).encode()))

    def index(self):
        with open(os.path.join(self.path, "index.json")) as f:
            return json.load(f)

    def manifest_for(self, tag):
        for m in self.index()["manifests"]:
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
                return m
        raise SystemExit(f"no tag {tag}")

    def finish(self, manifests):
        os.makedirs(self.path, exist_ok=True)
        with open(os.path.join(self.path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}, f)


def tar_directory(directory, out):
    """A plain tar of DIRECTORY's files with paths relative to it, sorted, owned by root."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
        for root, dirs, files in os.walk(directory):
            dirs.sort()
            for name in sorted(dirs + files):
                full = os.path.join(root, name)
                info = t.gettarinfo(full, os.path.relpath(full, directory))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(full, "rb") as f:
                        t.addfile(info, f)
                else:
                    t.addfile(info)


def docker25(source, tag, out):
    """Docker 25+: uncompressed layers in an OCI layout, and manifest.json naming them."""
    src = Layout(source)
    manifest = src.json(src.manifest_for(tag)["digest"])
    work = out + ".d"
    dst = Layout(work)
    config = src.read(manifest["config"]["digest"])
    config_desc = dict(mediaType=OCI_CONFIG, **dst.write(config))
    layers = []
    for layer in manifest["layers"]:
        layers.append(dict(mediaType=OCI_LAYER, **dst.write(gzip.decompress(src.read(layer["digest"])))))
    new = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc, "layers": layers}
    m = dst.write_json(new, OCI_MANIFEST)
    m["annotations"] = {"io.containerd.image.name": f"docker.io/library/{tag}:latest",
                        "org.opencontainers.image.ref.name": "latest"}
    dst.finish([m])
    with open(os.path.join(work, "manifest.json"), "w") as f:
        json.dump([{"Config": "blobs/sha256/" + config_desc["digest"][7:], "RepoTags": [f"{tag}:latest"],
                    "Layers": ["blobs/sha256/" + l["digest"][7:] for l in layers]}], f)
    tar_directory(work, out)


def containerd(source, tag, out):
    """containerd's export: index.json → a nested index → the manifest, with its platform."""
    src = Layout(source)
    entry = src.manifest_for(tag)
    manifest = src.json(entry["digest"])
    config = src.json(manifest["config"]["digest"])
    work = out + ".d"
    dst = Layout(work)
    for d in [entry["digest"], manifest["config"]["digest"]] + [l["digest"] for l in manifest["layers"]]:
        dst.write(src.read(d))
    plain = {k: entry[k] for k in ("mediaType", "digest", "size")}
    plain["platform"] = {"os": config["os"], "architecture": config["architecture"]}
    nested = dst.write_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [plain]}, OCI_INDEX)
    nested["annotations"] = {"io.containerd.image.name": f"docker.io/library/{tag}:latest",
                             "org.opencontainers.image.ref.name": "latest"}
    dst.finish([nested])
    tar_directory(work, out)


def go_arch():
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def platforms(source, tag, other, out, docker):
    """An index (or Docker manifest list) of TAG for this machine and OTHER for linux/arm64."""
    src = Layout(source)
    dst = Layout(out)
    entries = []
    for name, arch in ((tag, go_arch()), (other, "arm64" if go_arch() != "arm64" else "amd64")):
        manifest = src.json(src.manifest_for(name)["digest"])
        config = src.json(manifest["config"]["digest"])
        config["architecture"] = arch
        config_desc = dst.write_json(config, DOCKER_CONFIG if docker else OCI_CONFIG)
        layers = []
        for layer in manifest["layers"]:
            layers.append(dict(mediaType=DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP, **dst.write(src.read(layer["digest"]))))
        new = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST, "config": config_desc, "layers": layers}
        desc = dst.write_json(new, DOCKER_MANIFEST if docker else OCI_MANIFEST)
        desc["platform"] = {"os": "linux", "architecture": arch}
        entries.append(desc)
    media = DOCKER_LIST if docker else OCI_INDEX
    top = dst.write_json({"schemaVersion": 2, "mediaType": media, "manifests": entries}, media)
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    dst.finish([top])


def dir_transport(source, tag, out):
    """containers/image's dir: form of TAG: manifest.json (the tag's document), DIGEST.manifest.json
    for each image of a list, the blobs by hex digest (hard links where possible), a version file."""
    src = Layout(source)
    os.makedirs(out, exist_ok=True)

    def put(d, name):
        target = os.path.join(out, name)
        if os.path.exists(target):
            return
        try:
            os.link(src.blob_path(d), target)
        except OSError:
            with open(target, "wb") as f:
                f.write(src.read(d))

    def images(d, name):
        put(d, name)
        document = src.json(d)
        for child in document.get("manifests", []):
            images(child["digest"], child["digest"].split(":", 1)[1] + ".manifest.json")
        for blob in ([document["config"]] if "config" in document else []) + document.get("layers", []):
            put(blob["digest"], blob["digest"].split(":", 1)[1])

    images(src.manifest_for(tag)["digest"], "manifest.json")
    with open(os.path.join(out, "version"), "w") as f:
        f.write("Directory Transport Version: 1.1\n")


def layer_tar(entries):
    """A tar of (name, kind, data-or-target, size-claim) entries."""
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, value in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if kind == "file":
                info.size = len(value)
                t.addfile(info, io.BytesIO(value))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                t.addfile(info)
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = value
                t.addfile(info)
            elif kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = value
                t.addfile(info)
    return b.getvalue()


def huge_claim():
    """One file whose header claims 2^40 bytes, followed by a few bytes and the end of the archive."""
    info = tarfile.TarInfo("usr/huge")
    info.size = 1 << 40
    info.mtime = 1700000000
    header = info.tobuf(format=tarfile.PAX_FORMAT)
    return header + b"x" * 512 + bytes(1024)


def write_image(out, layers, config_edit=None, manifest_edit=None, blob_edit=None, tag="bad"):
    """An OCI layout tagged TAG of gzip LAYERS (tar bytes), with optional edits."""
    dst = Layout(out)
    diff_ids = [digest(l) for l in layers]
    blobs = [gzip.compress(l, mtime=0) for l in layers]
    config = {"architecture": go_arch(), "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids},
              "config": {"Env": ["PATH=/usr/bin"]}}
    if config_edit:
        config_edit(config)
    config_desc = dst.write_json(config, OCI_CONFIG)
    layer_descs = [dict(mediaType=OCI_LAYER_GZIP, **dst.write(b)) for b in blobs]
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_desc, "layers": layer_descs}
    if manifest_edit:
        manifest_edit(manifest, dst)
    m = dst.write_json(manifest, OCI_MANIFEST)
    if blob_edit:
        blob_edit(dst, layer_descs)
    m["annotations"] = {"org.opencontainers.image.ref.name": tag}
    dst.finish([m])
    return dst, m


BASE = [("etc", "dir", None), ("etc/passwd", "file", b"root:x:0:0::/root:/bin/sh\n")]


def hostile(case, out):
    if case == "dotdot":
        write_image(out, [layer_tar(BASE + [("etc/../../evil", "file", b"x")])])
    elif case == "absolute":
        write_image(out, [layer_tar(BASE + [("/etc/evil", "file", b"x")])])
    elif case == "through-symlink":
        write_image(out, [layer_tar(BASE + [("link", "symlink", "/etc"), ("link/evil", "file", b"x")])])
    elif case == "hardlink-out":
        write_image(out, [layer_tar(BASE + [("etc/shadow", "hardlink", "../../etc/shadow")])])
    elif case == "whiteout-through-symlink":
        write_image(out, [layer_tar(BASE + [("link", "symlink", "/etc")]), layer_tar([("link/.wh.passwd", "file", b"")])])
    elif case == "whiteout-dotdot":
        write_image(out, [layer_tar(BASE), layer_tar([("etc/.wh..", "file", b"")])])
    elif case == "huge":
        write_image(out, [huge_claim()])
    elif case == "bomb":
        write_image(out, [layer_tar(BASE + [("zeros", "file", bytes(64 << 20))])])
    elif case == "big-manifest":
        dst, m = write_image(out, [layer_tar(BASE)])
        # A manifest that claims and has 100 MB (sparse: no disk is used).
        path = os.path.join(out, "blobs", "sha256", "0" * 64)
        with open(path, "wb") as f:
            f.truncate(100 << 20)
        m = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "0" * 64, "size": 100 << 20,
             "annotations": {"org.opencontainers.image.ref.name": "bad"}}
        dst.finish([m])
    elif case == "bad-digest":
        def corrupt(dst, layers):
            path = dst.blob_path(layers[0]["digest"])
            data = bytearray(open(path, "rb").read())
            data[4] ^= 0xff  # the gzip header's mtime: the data decompresses the same, the digest differs
            open(path, "wb").write(bytes(data))
        write_image(out, [layer_tar(BASE)], blob_edit=corrupt)
    elif case == "bad-diff-id":
        write_image(out, [layer_tar(BASE)], config_edit=lambda c: c["rootfs"].update(diff_ids=[digest(b"other")]))
    elif case == "diff-id-count":
        write_image(out, [layer_tar(BASE)], config_edit=lambda c: c["rootfs"]["diff_ids"].append(digest(b"other")))
    else:
        raise SystemExit(f"unknown case {case}")


HOSTILE = ["dotdot", "absolute", "through-symlink", "hardlink-out", "whiteout-through-symlink", "whiteout-dotdot",
           "huge", "bomb", "big-manifest", "bad-digest", "bad-diff-id", "diff-id-count"]

if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "docker25":
        docker25(*args)
    elif command == "containerd":
        containerd(*args)
    elif command == "platforms":
        platforms(args[0], args[1], args[2], args[3], "--docker" in args[4:])
    elif command == "dir":
        dir_transport(*args)
    elif command == "tiny":
        write_image(args[0], [layer_tar(BASE)], config_edit=lambda c: c.update(
            architecture="amd64",
            created="2023-11-14T22:13:20Z",
            history=[{"created": "2023-11-14T22:13:20Z", "created_by": "tiny layer"},
                     {"created": "2023-11-14T22:13:21Z", "created_by": "ENV PATH=/usr/bin", "empty_layer": True}]),
            tag="tiny")
    elif command == "hostile":
        hostile(*args)
    else:
        raise SystemExit(__doc__)
