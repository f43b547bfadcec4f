# Errors.
capture no-vduse vduse-net-null --name nomod
mkdir -p /etc/vduse/net-null
printf '%s' "$NET0_YAML" >/etc/vduse/net-null/net0.yaml
capture print-config vduse-net-null --config /etc/vduse/net-null/net0.yaml --mtu 9000 --print-config
capture check-config vduse-net-null --config /etc/vduse/net-null/net0.yaml --check-config
capture modprobe sh -c 'for m in vduse virtio_vdpa virtio_net pktgen; do modprobe $m || exit 1; done'
capture nocap setpriv --inh-caps=-net_admin --bounding-set=-net_admin vduse-net-null --name nocap
ls /dev/vduse | result nocap.vduse
# New interfaces get no IPv6, so the kernel sends nothing on them by itself.
echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6
