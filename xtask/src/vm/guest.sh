#!/bin/bash
# The guest side of `cargo xtask vm`: PID 1 after the initramfs handed over
# (the host's root, read-only beneath a tmpfs overlay; /vm is the run's
# share). It mounts what a systemd host has (pure cgroup v2 with systemd's
# options), puts itself in the chosen cgroup layout, runs each test binary
# of /vm/plan and leaves its output and exit status in /vm/out, then powers
# the guest off. In the systemd layouts it first hands PID 1 to the host's
# systemd, which mounts all that itself and starts this script again as a
# service, where it runs each binary as a unit of its own.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp LANG=C.UTF-8
# Every layout of the matrix can give a run memory and pids limits.
export SANDBOX_EXPECT_CGROUP_LIMITS=1
say() { echo "vm: $*" > /dev/console; }
off() { sync; echo o > /proc/sysrq-trigger; sleep 10; }

layout=$(cat /vm/layout)
case $layout in
systemd|systemd-user|systemd-session)
    export SANDBOX_EXPECT_SYSTEMD=1
    if [ $$ = 1 ]; then
        # Phase 1: systemd 252 from the host's root as PID 1, booting only
        # what the matrix needs: dbus (the system bus), and this script.
        mkdir -p /etc/systemd/system
        cat > /etc/systemd/system/sbx-matrix.target <<'UNIT'
[Unit]
Description=the kernel matrix
Requires=sbx-matrix.service
UNIT
        cat > /etc/systemd/system/sbx-matrix.service <<'UNIT'
[Unit]
Description=the kernel matrix's test runner
Requires=dbus.socket
After=dbus.socket basic.target
[Service]
Type=oneshot
ExecStart=/bin/bash /vm/guest.sh
StandardOutput=journal+console
StandardError=journal+console
LimitNOFILE=65536
UNIT
        # Debian's tmpfiles.d/tmp.conf empties /tmp at boot ("D"): in the
        # overlay only, but a workspace under the host's /tmp (CI's clone)
        # would vanish from the guest. Same name in /etc overrides it.
        mkdir -p /etc/tmpfiles.d
        echo 'd /tmp 1777 root root -' > /etc/tmpfiles.d/tmp.conf
        # The matrix's unprivileged user, with a home and a user manager.
        useradd -u 1000 -U -m -d /home/sbx -s /bin/bash sbx 2>/dev/null
        say "handing PID 1 to $(/lib/systemd/systemd --version | head -1)"
        exec /lib/systemd/systemd --unit=sbx-matrix.target --log-target=console --log-level=warning
    fi ;;
esac
trap off EXIT

if [ $$ = 1 ]; then
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
fi
# What module autoloading would bring, loaded up front.
modprobe -a tun veth nf_tables nft_ct nft_reject_inet nft_reject nft_fib_inet \
    nf_conntrack nft_chain_nat 2>/dev/null
echo 1 > /proc/sys/net/ipv4/ip_forward 2>/dev/null

cg=/sys/fs/cgroup
enable() { echo "+memory +pids +cpu" > "$1/cgroup.subtree_control"; }
case $layout in systemd*) ;; *) enable $cg ;; esac
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
root|leaf|systemd) user=root ;;
delegated-user) user=nobody ;;
systemd-user|systemd-session) user=sbx ;;
*) say "unknown layout $layout"; exit 1 ;;
esac
say "kernel $(uname -r), layout $layout, tests as $user"
if [ $user = sbx ]; then
    # The user's manager, with its session bus (dbus-user-session), as a
    # login would start them.
    systemctl start user@1000.service || say "user@1000.service did not start"
    uenv=(XDG_RUNTIME_DIR=/run/user/1000 DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus)
    for _ in $(seq 50); do [ -S /run/user/1000/bus ] && break; sleep 0.2; done
fi
limit=$(cat /vm/timeout)

mkdir -p /vm/out
while IFS=$'\t' read -r name binary args; do
    [ -n "$name" ] || continue
    unit="t-${name//[^a-zA-Z0-9]/-}"
    start=$(date +%s)
    # Just before the binary's time is up, the blocked tasks' stacks go to
    # the console (printk's level raised, as `quiet` hides them): a test
    # that hangs in the kernel shows where.
    ( sleep $((limit - 5)) && say "$name: still running after $((limit - 5)) s: the blocked tasks follow" \
        && echo 7 > /proc/sys/kernel/printk && echo w > /proc/sysrq-trigger ) &
    dog=$!
    # shellcheck disable=SC2086
    case $layout in
    systemd)
        # A service with Delegate=yes, as a supervisor that limits what it
        # runs is deployed.
        say "running $name as $unit.service (Delegate=yes)"
        timeout -k 10 $((limit + 30)) systemd-run --quiet --wait --pipe --collect \
            --unit="$unit" -p Delegate=yes -p RuntimeMaxSec="$limit" -p LimitNOFILE=65536 \
            -E HOME=/tmp -E LANG=C.UTF-8 -E SANDBOX_EXPECT_CGROUP_LIMITS=1 -E SANDBOX_EXPECT_SYSTEMD=1 \
            "$binary" $args < /dev/null > "/vm/out/$name.log" 2>&1 ;;
    systemd-user)
        # A service of the user's own manager (no delegation asked for):
        # limits come from a scope it asks that manager for.
        say "running $name as $unit.service of user@1000.service"
        timeout -k 10 $((limit + 30)) setpriv --reuid=1000 --regid=1000 --init-groups \
            env "${uenv[@]}" systemd-run --user --quiet --wait --pipe --collect \
            --unit="$unit" -p RuntimeMaxSec="$limit" \
            -E HOME=/home/sbx -E LANG=C.UTF-8 -E SANDBOX_EXPECT_CGROUP_LIMITS=1 -E SANDBOX_EXPECT_SYSTEMD=1 \
            "$binary" $args < /dev/null > "/vm/out/$name.log" 2>&1 ;;
    systemd-session)
        # As a login session: a scope of root's beneath user-1000.slice (what
        # logind makes for an SSH login), so the user cannot move its own
        # processes into its manager's subtree and systemd moves each run.
        say "running $name in $unit.scope of user-1000.slice (a login session)"
        systemd-run --quiet --scope --uid=1000 --gid=1000 --slice=user-1000.slice \
            --unit="$unit" timeout -k 10 "$limit" env HOME=/home/sbx "${uenv[@]}" \
            "$binary" $args < /dev/null > "/vm/out/$name.log" 2>&1 ;;
    *)
        leaf=$(leaf_for "$unit")
        say "running $name in ${leaf#$cg}"
        if [ $user = root ]; then drop=(); else
            drop=(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all)
        fi
        timeout -k 10 "$limit" bash -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' \
            "$leaf" "${drop[@]}" "$binary" $args > "/vm/out/$name.log" 2>&1 ;;
    esac
    rc=$?
    kill $dog 2>/dev/null
    echo "$rc $(( $(date +%s) - start ))" > "/vm/out/$name.rc"
    say "$name: exit $rc in $(( $(date +%s) - start )) s"
done < /vm/plan
# Run cgroups left behind anywhere in the tree; under systemd also the
# scopes of processes that are gone (systemd collects an empty one at once).
sleep 1
find $cg -regex '.*/sandbox-\(probe-\)?[0-9]+-?[0-9]*\(\.scope\)?' -type d > /vm/out/leftover-cgroups 2>/dev/null
say "done"
