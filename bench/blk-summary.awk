# The tables of bench/blk, from the files bench/blk-guest.sh left (POSIX awk: mawk is
# enough, no jq):
#
#   awk -f bench/blk-summary.awk env status.tsv runs.tsv memory-end.tsv host-load.log fio/*.json
#
# fio's JSON is read with a small flattener that relies on fio's own layout (one member
# per line): "jobs/0/read/iops" and the like.

function trim(s) {
    sub(/^[ \t\r]+/, "", s)
    sub(/[ \t\r]+$/, "", s)
    return s
}

# One line of fio's pretty-printed JSON into val[FILE, PATH].
function json_line(line,    p, k, v, i, path) {
    line = trim(line)
    if (line ~ /,$/)
        line = substr(line, 1, length(line) - 1)
    if (line == "}" || line == "]") {
        depth--
        return
    }
    k = ""
    if (substr(line, 1, 1) == "\"" && (p = index(line, "\" : ")) > 0) {
        k = substr(line, 2, p - 2)
        v = substr(line, p + 4)
    } else if (depth > 0 && isarr[depth]) {
        k = "" cnt[depth]++
        v = line
    } else {
        v = line
    }
    if (v == "{" || v == "[") {
        depth++
        key[depth] = k
        isarr[depth] = (v == "[")
        cnt[depth] = 0
        return
    }
    path = ""
    for (i = 1; i <= depth; i++)
        if (key[i] != "")
            path = path key[i] "/"
    if (v ~ /^".*"$/)
        v = substr(v, 2, length(v) - 2)
    val[json_file, path k] = v
}

function base(path) {
    sub(/.*\//, "", path)
    return path
}

# fio's figure NAME (iops, bw_bytes, lat_ns/mean...) for TARGET and JOB, or "".
function fio(target, job, name,    dir) {
    dir = (job ~ /read/) ? "read" : "write"
    return val[target "." job, "jobs/0/" dir "/" name]
}

function has(target, job) {
    return ((target "." job) in seen)
}

function num(x, fmt) {
    return (x == "" || x == "-") ? "-" : sprintf(fmt, x)
}

function mib(bytes) {
    return (bytes == "") ? "" : bytes / 1048576
}

# Server CPU in % of one vCPU over the fio run (CLK_TCK is 100 on x86).
function cpu_pct(target, job,    k) {
    k = target SUBSEP job
    if (!(k in wall) || wall[k] <= 0)
        return ""
    return stick[k] / wall[k]
}

# Guest CPU busy, % of all vCPUs.
function busy_pct(target, job,    k) {
    k = target SUBSEP job
    if (!(k in total) || total[k] <= 0)
        return ""
    return 100 * busy[k] / total[k]
}

function ratio(a, b) {
    return (a == "" || b == "" || b + 0 == 0) ? "" : a / b
}

# The largest mid-job sample of memory FIELD for TARGET, or "".
function maxv(target, field,    best, k, parts) {
    best = ""
    for (k in mem) {
        split(k, parts, SUBSEP)
        if (parts[1] == target && parts[3] == field && mem[k] ~ /^-?[0-9]+$/ &&
            (best == "" || mem[k] + 0 > best + 0))
            best = mem[k]
    }
    return best
}

# What other processes used of the host's CPUs (%) while TARGET ran JOB, or "".
function others(target, job,    k, i, n, sum) {
    k = target SUBSEP job
    if (!(k in jstart) || jstart[k] == "")
        return ""
    for (i = 1; i <= nhost; i++)
        if (host_t[i] + 0 > jstart[k] + 0 && host_t[i] - 2 < jend[k] + 0) {
            n++
            sum += host_o[i]
        }
    return n ? sum / n : ""
}

# "*" when the host was busy with other work (over 10% of its CPUs) during the job.
function mark(target, job,    o) {
    o = others(target, job)
    if (o != "" && o + 0 > 10) {
        disturbed = 1
        return "*"
    }
    return " "
}

# Nanoseconds to microseconds, "" kept.
function us(ns) {
    return (ns == "") ? "" : ns / 1000
}

FNR == 1 {
    file = FILENAME
    depth = 0
    if (file ~ /\.json$/) {
        json_file = base(file)
        sub(/\.json$/, "", json_file)
        seen[json_file] = 1
    }
}

file ~ /\.json$/ {
    json_line($0)
    next
}

base(file) == "env" {
    k = $1
    $1 = ""
    env[k] = trim($0)
    next
}

base(file) == "status.tsv" {
    split($0, f, "\t")
    status[f[1]] = f[2]
    order[++ntargets] = f[1]
    next
}

base(file) == "runs.tsv" && FNR > 1 {
    split($0, f, "\t")
    k = f[1] SUBSEP f[2]
    rc[k] = f[3]
    wall[k] = f[4]
    stick[k] = f[5]
    busy[k] = f[6]
    total[k] = f[7]
    mem[f[1], f[2], "VmRSS"] = f[8]
    mem[f[1], f[2], "RssAnon"] = f[9]
    mem[f[1], f[2], "RssFile"] = f[10]
    mem[f[1], f[2], "RssShmem"] = f[11]
    mem[f[1], f[2], "VmHWM"] = f[12]
    mem[f[1], f[2], "Bounce"] = f[13]
    if (f[8] ~ /^[0-9]+$/ && f[13] ~ /^[0-9]+$/)
        mem[f[1], f[2], "Own"] = f[8] - f[13]
    topname[k] = f[14]
    topticks[k] = f[15]
    jstart[k] = f[16]
    jend[k] = f[17]
    next
}

# Host samples (bench/blk, every 2 s): seconds since QEMU started, our %, others' %.
base(file) == "host-load.log" && FNR > 1 && NF == 4 {
    nhost++
    host_t[nhost] = $1
    host_o[nhost] = $3
    next
}

base(file) == "memory-end.tsv" {
    split($0, f, "\t")
    endmem[f[1], "VmRSS"] = f[2]
    endmem[f[1], "RssAnon"] = f[3]
    endmem[f[1], "RssFile"] = f[4]
    endmem[f[1], "RssShmem"] = f[5]
    endmem[f[1], "VmHWM"] = f[6]
    endmem[f[1], "Bounce"] = f[7]
    next
}

END {
    njobs = split("randread-4k-qd1 randread-4k-qd16 randwrite-4k-qd1 randwrite-4k-qd16 read-1m-qd4 write-1m-qd4", jobs, " ")

    print "IOPS and bandwidth (MiB/s); ratio = vduse-blk / qemu-storage-daemon; goal: >= 2x on"
    print "4k random at depth 16, >= 1x elsewhere"
    print ""
    printf "%-18s %9s %8s   %9s %8s   %6s %-6s   %9s %8s\n", "", "vduse-blk", "", "qemu-sd", "", "ratio", "goal", "brd", ""
    printf "%-18s %9s %8s   %9s %8s   %6s %-6s   %9s %8s\n", "job", "IOPS", "MiB/s", "IOPS", "MiB/s", "", "", "IOPS", "MiB/s"
    for (j = 1; j <= njobs; j++) {
        job = jobs[j]
        a = fio("vduse-blk", job, "iops")
        b = fio("qsd", job, "iops")
        c = fio("brd", job, "iops")
        r = ratio(a, b)
        goal = (job ~ /^rand.*-4k-qd16$/) ? 2 : 1
        verdict = (r == "") ? "" : (r + 0 >= goal ? "met" : "MISSED")
        printf "%-18s %9s%s%8s   %9s%s%8s   %6s %-6s   %9s%s%8s\n", job,
            num(a, "%.0f"), mark("vduse-blk", job), num(mib(fio("vduse-blk", job, "bw_bytes")), "%.1f"),
            num(b, "%.0f"), mark("qsd", job), num(mib(fio("qsd", job, "bw_bytes")), "%.1f"),
            num(r, "%.2fx"), verdict,
            num(c, "%.0f"), mark("brd", job), num(mib(fio("brd", job, "bw_bytes")), "%.1f")
    }

    if (disturbed)
        print "* other processes used over 10% of the host's CPUs during this job: disturbed"
    print ""
    print "vduse-blk with cache none (O_DIRECT) over /dev/ram0 (brd): does queue depth help?"
    disturbed = 0
    printf "%-18s %-20s %9s %8s %10s %9s\n", "job", "target", "IOPS", "MiB/s", "lat us", "srv CPU%"
    for (t = 1; t <= 2; t++) {
        target = (t == 1) ? "vduse-blk-none" : "vduse-blk-none-sync"
        if (!has(target, jobs[1]) && !has(target, jobs[2]))
            continue
        for (j = 1; j <= 2; j++) {
            job = jobs[j]
            printf "%-18s %-20s %9s%s%8s %10s %9s\n", job, target,
                num(fio(target, job, "iops"), "%.0f"), mark(target, job),
                num(mib(fio(target, job, "bw_bytes")), "%.1f"),
                num(us(fio(target, job, "lat_ns/mean")), "%.1f"),
                num(cpu_pct(target, job), "%.0f")
        }
    }
    if (disturbed)
        print "* other processes used over 10% of the host's CPUs during this job: disturbed"
    printf "depth 16 / depth 1: vduse-blk-none %s, vduse-blk-none-sync %s; brd itself %s;\n",
        num(ratio(fio("vduse-blk-none", jobs[2], "iops"), fio("vduse-blk-none", jobs[1], "iops")), "%.2fx"),
        num(ratio(fio("vduse-blk-none-sync", jobs[2], "iops"), fio("vduse-blk-none-sync", jobs[1], "iops")), "%.2fx"),
        num(ratio(fio("brd", jobs[2], "iops"), fio("brd", jobs[1], "iops")), "%.2fx")
    printf "over the file: vduse-blk %s, qemu-storage-daemon %s\n",
        num(ratio(fio("vduse-blk", jobs[2], "iops"), fio("vduse-blk", jobs[1], "iops")), "%.2fx"),
        num(ratio(fio("qsd", jobs[2], "iops"), fio("qsd", jobs[1], "iops")), "%.2fx")

    if (has("nbd-unix", jobs[1]) || has("nbd-tcp", jobs[1])) {
        print ""
        print "vduse-blk over NBD: qemu-nbd exports the same file to vduse-blk (on a Unix socket, and"
        print "on TCP over the loopback) and to the kernel's NBD client (/dev/nbd0); IOPS and MiB/s;"
        print "vs kernel = nbd-unix / kernel-nbd; vs file = nbd-unix / vduse-blk serving the file itself"
        disturbed = 0
        printf "%-18s %9s %8s   %9s %8s %7s %7s   %9s %8s\n", "", "kernel-nbd", "", "nbd-unix", "", "vs", "vs", "nbd-tcp", ""
        printf "%-18s %9s %8s   %9s %8s %7s %7s   %9s %8s\n", "job", "IOPS", "MiB/s", "IOPS", "MiB/s", "kernel", "file", "IOPS", "MiB/s"
        for (j = 1; j <= njobs; j++) {
            job = jobs[j]
            a = fio("vduse-blk", job, "iops")
            k = fio("kernel-nbd", job, "iops")
            u = fio("nbd-unix", job, "iops")
            t = fio("nbd-tcp", job, "iops")
            printf "%-18s %9s%s%8s   %9s%s%8s %7s %7s   %9s%s%8s\n", job,
                num(k, "%.0f"), mark("kernel-nbd", job), num(mib(fio("kernel-nbd", job, "bw_bytes")), "%.1f"),
                num(u, "%.0f"), mark("nbd-unix", job), num(mib(fio("nbd-unix", job, "bw_bytes")), "%.1f"),
                num(ratio(u, k), "%.2fx"), num(ratio(u, a), "%.2f"),
                num(t, "%.0f"), mark("nbd-tcp", job), num(mib(fio("nbd-tcp", job, "bw_bytes")), "%.1f")
        }
        if (disturbed)
            print "* other processes used over 10% of the host's CPUs during this job: disturbed"
    }

    print ""
    print "Per job: mean and 99th-percentile latency (us, submission to completion); server CPU in % of one vCPU"
    print "over the fio run, and its busiest thread; server CPU per I/O (us); guest CPU busy in %"
    print "of all vCPUs; host: % of the host's CPUs other processes used meanwhile"
    printf "%-18s %-19s %9s %9s %6s %-16s %5s %8s %6s %5s\n", "job", "target", "lat", "p99", "CPU%",
        "busiest thread", "CPU%", "CPU/IO", "busy%", "host"
    for (j = 1; j <= njobs; j++) {
        job = jobs[j]
        first = 1
        for (t = 1; t <= 8; t++) {
            target = (t == 1) ? "vduse-blk" : (t == 2) ? "qsd" : (t == 3) ? "brd" : (t == 4) ? "vduse-blk-none" : (t == 5) ? "vduse-blk-none-sync" : (t == 6) ? "nbd-unix" : (t == 7) ? "nbd-tcp" : "kernel-nbd"
            if (!has(target, job))
                continue
            k = target SUBSEP job
            cp = (target == "brd" || target == "kernel-nbd") ? "" : cpu_pct(target, job)
            io = fio(target, job, "iops")
            per = (cp == "" || io == "" || io + 0 == 0) ? "" : cp * 10000 / io
            tp = (topticks[k] ~ /^[0-9]+$/ && wall[k] > 0) ? topticks[k] / wall[k] : ""
            printf "%-18s %-19s %9s %9s %6s %-16s %5s %8s %6s %5s\n", first ? job : "",
                target == "qsd" ? "qemu-sd" : target,
                num(us(fio(target, job, "lat_ns/mean")), "%.1f"),
                num(us(fio(target, job, "lat_ns/percentile/99.000000")), "%.1f"),
                num(cp, "%.0f"), (k in topname && topname[k] != "-") ? topname[k] : "-",
                num(tp, "%.0f"), num(per, "%.1f"), num(busy_pct(target, job), "%.0f"),
                num(others(target, job), "%.0f")
            first = 0
        }
    }

    print ""
    print "Server memory under load (kB), sampled in the middle of each job, largest over the jobs:"
    print "VmRSS; bounce: the part of it that is the kernel's VDUSE bounce buffer mapped by the"
    print "server (anon_inode:[vduse-domain], up to 64 MiB, in RssFile); own = VmRSS - bounce;"
    print "VmHWM when the last job ended. Goal: vduse-blk <= 1/4 of qemu-storage-daemon"
    printf "%-22s %9s %9s %9s %9s %9s %9s\n", "", "VmRSS", "bounce", "own", "RssAnon", "RssShmem", "VmHWM"
    split("VmRSS Bounce Own RssAnon RssShmem VmHWM", fields, " ")
    for (t = 1; t <= 4; t++) {
        target = (t == 1) ? "vduse-blk" : (t == 2) ? "qsd" : (t == 3) ? "vduse-blk-none" : "vduse-blk-none-sync"
        if (maxv(target, "VmRSS") == "")
            continue
        line = sprintf("%-22s", target == "qsd" ? "qemu-storage-daemon" : target)
        for (i = 1; i <= 6; i++) {
            v = (fields[i] == "VmHWM" && (target SUBSEP "VmHWM") in endmem) ? endmem[target, "VmHWM"] : maxv(target, fields[i])
            mm[target, fields[i]] = v
            line = line sprintf(" %9s", v == "" ? "-" : v)
        }
        print line
    }
    line = sprintf("%-22s", "vduse-blk / qemu-sd")
    for (i = 1; i <= 6; i++)
        line = line sprintf(" %9s", num(ratio(mm["vduse-blk", fields[i]], mm["qsd", fields[i]]), "%.2f"))
    print line

    print ""
    print "Targets:"
    bad = 0
    for (i = 1; i <= ntargets; i++) {
        printf "  %-16s %s\n", order[i], status[order[i]]
        if (status[order[i]] != "ok")
            bad = 1
    }
    if (ntargets == 0)
        print "  (no status: the guest script did not get far)"
}
