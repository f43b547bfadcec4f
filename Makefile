# make && sudo make install: builds the release binaries, then lays them out with
# dist/install (see dist/install --help). Packagers: make install PREFIX=/usr DESTDIR=...
# and, when the defaults (PREFIX/lib/systemd/system, PREFIX/share/doc/vduse) do not fit,
# UNITDIR=... DOCDIR=...
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR ?=
DOCDIR ?=
DESTDIR ?=

.PHONY: all install

all:
	cargo build --release --locked

install:
	dist/install --prefix "$(PREFIX)" --sysconfdir "$(SYSCONFDIR)" \
		$(if $(UNITDIR),--unitdir "$(UNITDIR)") $(if $(DOCDIR),--docdir "$(DOCDIR)") \
		$(if $(DESTDIR),--destdir "$(DESTDIR)")
