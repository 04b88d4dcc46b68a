# The `netboot` command (Python distribution netboot-appliance).
#
#   pkgs.callPackage ./nixos/package.nix { }
#
# By default the dependencies are nixpkgs' own builds (attributes `rtslib-fb`
# and `configshell-fb`, the names nixpkgs' targetcli-fb uses): that set is built and tested together, and
# the exact pins in pyproject.toml are relaxed to it. With
# `pinDependencies = true` the exact releases from pyproject.toml are used
# instead (same PyPI sources, hashes recorded below).
{
  lib,
  python3Packages,
  pinDependencies ? false,
}:
let
  # pyproject.toml pins: PyPI sdist name, version and hash of the sdist.
  pins = {
    tftpy = {
      pname = "tftpy";
      version = "0.8.7";
      hash = "sha256-6KWqCS2rLhy7m5Q5IDaCe4CNw362zxsaszyBlXs/X+I=";
    };
    rtslib-fb = {
      pname = "rtslib_fb";
      version = "2.2.4";
      hash = "sha256-AITaplGnKxys0OqvFicl32m5kfUBz/6H4PZ+mSJKcmc=";
    };
    configshell-fb = {
      pname = "configshell_fb";
      version = "2.0.3";
      hash = "sha256-27CGwWwWA6Iw+QF++Fusyr/V2HQ5oB6WM3flDxAiD1M=";
    };
    scapy = {
      pname = "scapy";
      version = "2.8.0";
      hash = "sha256-DqzR+UDRFWEcG4pGlvMVtLgMrylR5UaJOj0M1/a/1v0=";
    };
    pyroute2 = {
      pname = "pyroute2";
      version = "0.9.7";
      hash = "sha256-pniwmEeMRuxR1r+aA8PNKsAXLf+lkOnowe6rYz0MF8Y=";
    };
  };

  pinned =
    attr:
    let
      package = python3Packages.${attr};
      pin = pins.${attr};
    in
    if !pinDependencies || package.version == pin.version then
      package
    else
      package.overridePythonAttrs (_: {
        inherit (pin) version;
        src = python3Packages.fetchPypi { inherit (pin) pname version hash; };
        # nixpkgs' patches target its own version; tests need network or root.
        patches = [ ];
        doCheck = false;
      });

  root = ../.;
in
python3Packages.buildPythonApplication {
  pname = "netboot-appliance";
  version = "0.1.0";
  pyproject = true;

  # Only what the wheel needs, so editing tests or docs does not rebuild it.
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      (root + "/pyproject.toml")
      (root + "/appliance")
      (lib.fileset.maybeMissing (root + "/README.md"))
    ];
  };

  # setuptools refuses a missing `readme`; the README is documentation only.
  postPatch = ''
    test -e README.md || echo "netboot-appliance" > README.md
  '';

  build-system = [
    python3Packages.setuptools
    python3Packages.wheel
  ];

  dependencies = map pinned (builtins.attrNames pins);

  pythonRelaxDeps = lib.optionals (!pinDependencies) [
    "tftpy"
    "rtslib-fb"
    "configshell-fb"
    "scapy"
    "pyroute2"
  ];

  # The test suite needs network namespaces, LIO and QEMU; it runs in the
  # project's CI, not in the sandbox.
  doCheck = false;
  pythonImportsCheck = [
    "appliance"
    "appliance.cli.main"
  ];

  meta = {
    description = "Boot server: TFTP straight from the Nix store, root disks over iSCSI via kernel LIO";
    license = lib.licenses.mit;
    mainProgram = "netboot";
    platforms = lib.platforms.linux;
  };
}
