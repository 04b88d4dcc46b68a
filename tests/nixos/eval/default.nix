# Evaluates NixOS configurations for the tests. With `nixpkgs` (a checkout
# holding nixos/), the real module system of NixOS does it
# (nixos/lib/eval-config.nix); otherwise lib.evalModules with the option
# declarations of ./nixos-options.nix and the packages of ./pkgs.nix.
{
  lib,
  nixpkgs ? null,
}:
rec {
  full = nixpkgs != null;

  evalSystem =
    {
      system ? "x86_64-linux",
      modules,
      specialArgs ? { },
    }:
    if full then
      import (nixpkgs + "/nixos/lib/eval-config.nix") { inherit system modules specialArgs; }
    else
      lib.evalModules {
        inherit specialArgs;
        modules = [
          ./nixos-options.nix
          (
            { config, ... }:
            {
              # As nixos/modules/misc/nixpkgs.nix: pkgs with the configured overlays.
              _module.args.pkgs = import ./pkgs.nix {
                inherit lib system;
                overlays = config.nixpkgs.overlays;
                evalNixos = evalSystem;
              };
            }
          )
          (
            { config, pkgs, ... }:
            {
              # Stands for the system nixos/modules/system/activation/top-level.nix builds.
              system.build.toplevel = pkgs.runCommand "nixos-system-${config.networking.hostName}" { } "";
            }
          )
        ]
        ++ modules;
      };

  # What NixOS's top-level.nix throws on ("Failed assertions: …").
  failedAssertions = config: map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);

  # A script built by writeShellApplication, as the tests check it.
  script = drv: {
    name = drv.name;
    text = drv.text;
    shellcheckFlags = drv.shellcheckFlags or [ ];
  };

  # The netboot parts of an evaluated appliance configuration, as JSON data.
  applianceSummary =
    config:
    let
      cfg = config.services.netboot-appliance;
      service = config.systemd.services.netboot-appliance;
      configFile = config.environment.etc."netboot/appliance.toml".source;
    in
    {
      settings = builtins.fromJSON configFile.document;
      buildCommand = configFile.buildCommand;
      package = cfg.package.name;
      clientGate = script cfg.clientGate;
      serviceConfig = service.serviceConfig;
      unitConfig = service.unitConfig;
      path = map (p: p.name or p) service.path;
      wants = service.wants;
      after = service.after;
      kernelModules = config.boot.kernelModules;
      tmpfiles = config.systemd.tmpfiles.rules;
      tcpPorts = config.networking.firewall.allowedTCPPorts;
      udpPorts = config.networking.firewall.allowedUDPPorts;
      rootKeys = config.users.users.root.openssh.authorizedKeys.keys or [ ];
    };

  clientSummary =
    config:
    let
      cfg = config.netboot.client;
    in
    {
      publish = script cfg.publish.package;
      installBootLoader = toString config.system.build.installBootLoader;
      confirm = config.systemd.services.netboot-confirm.serviceConfig or null;
      iscsi = config.boot.iscsi-initiator;
      initrdFiles = lib.mapAttrs (_: f: {
        name = f.source.name;
        buildCommand = f.source.buildCommand or "";
      }) config.boot.initrd.extraFiles;
      initrdSystemd = config.boot.initrd.systemd.enable;
      initrdNetwork = {
        inherit (config.boot.initrd.network) enable;
        udhcpc = config.boot.initrd.network.udhcpc.enable;
      };
      kernelParams = config.boot.kernelParams;
      networks = lib.mapAttrs (_: n: {
        inherit (n) matchConfig networkConfig dhcpV4Config;
      }) config.systemd.network.networks;
      knownHosts = lib.mapAttrs (_: h: { inherit (h) hostNames publicKey; }) config.programs.ssh.knownHosts;
      rootFs = {
        inherit (config.fileSystems."/") device fsType options;
      };
      loaders = {
        grub = config.boot.loader.grub.enable;
        extlinux = config.boot.loader.generic-extlinux-compatible.enable;
        systemd-boot = config.boot.loader.systemd-boot.enable;
      };
    };

  # Failed assertions first, as nixos-rebuild reports them; the summary
  # only for a configuration that would build.
  summarize =
    what: config:
    let
      failed = failedAssertions config;
    in
    if failed != [ ] then { failedAssertions = failed; } else what config;
}
