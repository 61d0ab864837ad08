#!/bin/bash
# The guest side of `cargo xtask vm`: PID 1 after the initramfs handed over
# (the host's root, read-only beneath a tmpfs overlay; /vm is the run's
# share). It mounts what a systemd host has (pure cgroup v2 with systemd's
# options), puts itself in the chosen cgroup layout, runs each test binary
# of /vm/plan and leaves its output and exit status in /vm/out, then powers
# the guest off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp LANG=C.UTF-8
# Every layout of the matrix can give a run memory and pids limits.
export SANDBOX_EXPECT_CGROUP_LIMITS=1
say() { echo "vm: $*" > /dev/console; }
off() { sync; echo o > /proc/sysrq-trigger; sleep 10; }
trap off EXIT

mount -t proc proc /proc
mount -t sysfs sysfs /sys
# /tmp stays the overlay's (writable, the host's untouched beneath): the
# workspace being tested may live under the host's /tmp.
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts /dev/pts
ln -sf pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t mqueue mqueue /dev/mqueue
# As systemd mounts it on a pure v2 host.
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup
ulimit -n 65536
# What module autoloading would bring, loaded up front.
modprobe -a tun veth nf_tables nft_ct nft_reject_inet nft_reject nft_fib_inet \
    nf_conntrack nft_chain_nat 2>/dev/null
echo 1 > /proc/sys/net/ipv4/ip_forward 2>/dev/null

layout=$(cat /vm/layout)
cg=/sys/fs/cgroup
enable() { echo "+memory +pids +cpu" > "$1/cgroup.subtree_control"; }
enable $cg
# The cgroup each test binary starts in, alone (as a service's main
# process is), made fresh for it: prints its path.
leaf_for() {
    case $layout in
    root)
        # The root cgroup (a container's namespace root, or a host without
        # systemd), shared with this script.
        echo $cg ;;
    leaf)
        # As a systemd service: a leaf beneath a slice with the
        # controllers enabled.
        mkdir -p $cg/test.slice/$1.service
        enable $cg/test.slice
        echo $cg/test.slice/$1.service ;;
    delegated-user)
        # As systemd delegates to a user: user@65534.service and below
        # owned by nobody, the tests in a leaf scope of its app.slice.
        local u=$cg/user.slice/user-65534.slice/user@65534.service
        mkdir -p $u/init.scope $u/app.slice/$1.scope
        enable $cg/user.slice
        enable $cg/user.slice/user-65534.slice
        enable $u
        enable $u/app.slice
        chown -R 65534:65534 $u
        echo $u/app.slice/$1.scope ;;
    esac
}
case $layout in
root|leaf) user=root ;;
delegated-user) user=nobody ;;
*) say "unknown layout $layout"; exit 1 ;;
esac
say "kernel $(uname -r), layout $layout, tests as $user"

mkdir -p /vm/out
while IFS=$'\t' read -r name binary args; do
    [ -n "$name" ] || continue
    leaf=$(leaf_for "t-${name//[^a-zA-Z0-9]/-}")
    say "running $name in ${leaf#$cg}"
    start=$(date +%s)
    if [ $user = root ]; then drop=(); else
        drop=(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all)
    fi
    # shellcheck disable=SC2086
    timeout -k 10 "$(cat /vm/timeout)" bash -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' \
        "$leaf" "${drop[@]}" "$binary" $args > "/vm/out/$name.log" 2>&1
    rc=$?
    echo "$rc $(( $(date +%s) - start ))" > "/vm/out/$name.rc"
    say "$name: exit $rc in $(( $(date +%s) - start )) s"
done < /vm/plan
# Run cgroups left behind anywhere in the tree.
find $cg -regex '.*/sandbox-\(probe-\)?[0-9]+-?[0-9]*' -type d > /vm/out/leftover-cgroups 2>/dev/null
say "done"
