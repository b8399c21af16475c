# make test-containers: the static binary (make static) in a real OCI runtime, podman with runc
# from Debian: tests/containers/ builds its images locally (podman import, mmdebstrap; the Debian
# rootfs cached in build/containers/), pulls nothing and leaves nothing behind. About 3 minutes,
# one of them the restart-policy window; run once by .ci/run. Included by the Makefile, whose
# static build (mk/static.mk) it uses.

CONTAINERS_PYTEST ?= /usr/bin/python3 -m pytest

.PHONY: test-containers

test-containers: static
	@scripts/deps.sh containers
	MTR_STATIC_BIN=$(abspath $(STATIC_STRIPPED)) PYTHONDONTWRITEBYTECODE=1 \
	  $(CONTAINERS_PYTEST) -q -p no:cacheprovider tests/containers
