# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_vduse_probe_global_optspecs
    string join \n format= json require= q/quiet no-create h/help V/version
end

function __fish_vduse_probe_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_vduse_probe_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_vduse_probe_using_subcommand
    set -l cmd (__fish_vduse_probe_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c vduse-probe -n "__fish_vduse_probe_needs_command" -l format -d 'Output format' -r -f -a "human\t'A readable report'
json\t'JSON (schema 1, documented in vduse-probe(1))'
env\t'KEY=VALUE lines for a shell\'s eval'"
complete -c vduse-probe -n "__fish_vduse_probe_needs_command" -l require -d 'Require EXPR to hold; exit 1 naming each one that does not (repeatable)' -r
complete -c vduse-probe -n "__fish_vduse_probe_needs_command" -l json -d 'Same as --format json'
complete -c vduse-probe -n "__fish_vduse_probe_needs_command" -s q -l quiet -d 'Print nothing on standard output (errors and unmet requirements still go to stderr)'
complete -c vduse-probe -n "__fish_vduse_probe_needs_command" -l no-create -d 'Do not create throwaway devices: device types are then reported as unknown'
complete -c vduse-probe -n "__fish_vduse_probe_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vduse-probe -n "__fish_vduse_probe_needs_command" -s V -l version -d 'Print version'
complete -c vduse-probe -n "__fish_vduse_probe_needs_command" -f -a "get" -d 'Print a single value, e.g. `vduse-probe get api-version` prints `1`'
complete -c vduse-probe -n "__fish_vduse_probe_needs_command" -f -a "remove" -d 'Detach and destroy a device no process serves (an orphan, or one kept with keep-device); a served one is refused. Needs root'
complete -c vduse-probe -n "__fish_vduse_probe_using_subcommand get" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vduse-probe -n "__fish_vduse_probe_using_subcommand remove" -s h -l help -d 'Print help'
