# Sourced by scripts/setup.sh and scripts/install-chromium.sh: SUDO (empty when root) and apt_install PACKAGE...,
# which installs Debian packages non-interactively.
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
apt_install() {
  # DPkg::Lock::Timeout: wait up to 2 minutes for another apt/dpkg process's lock instead of failing at once
  $SUDO apt-get -o DPkg::Lock::Timeout=120 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=120 install -y -qq "$@" >/dev/null
}
