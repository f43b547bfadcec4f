# make && sudo make install: builds the release binaries, then lays them out with
# dist/install (see dist/install --help). Packagers: make install PREFIX=/usr DESTDIR=...
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
DESTDIR ?=

.PHONY: all install

all:
	cargo build --release --locked

install:
	dist/install --prefix "$(PREFIX)" --sysconfdir "$(SYSCONFDIR)" $(if $(DESTDIR),--destdir "$(DESTDIR)")
