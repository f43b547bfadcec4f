# Escapes.
for path in rel-link abs-link up/outside/secret up/srv/outside/secret up/up/secret sub/../../outside/secret; do
    echo "== $path"
    cat "/mnt/v/$path" 2>&1
done | result escape.reads
# Files whose content holds the secret (dangling links are reported on stderr only).
grep -r -l "$SECRET" /mnt/v 2>/dev/null | result escape.grep
find /mnt/v -name secret 2>&1 | result escape.find
