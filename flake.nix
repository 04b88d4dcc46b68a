{
  description = "netboot-appliance: TFTP straight from the Nix store, root disks over iSCSI via kernel LIO";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    # Only the example Pi configuration uses it.
    nixos-hardware.url = "github:NixOS/nixos-hardware";
  };

  outputs =
    {
      self,
      nixpkgs,
      nixos-hardware,
    }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # The README's example, used verbatim below so the two cannot drift.
      exampleSettings = builtins.fromTOML (builtins.readFile ./examples/appliance.toml);
      exampleKeys = import ./examples/ssh-host-keys.nix;
      applianceAddress = "10.0.4.3";
      clientNames = builtins.filter (name: exampleSettings.hosts.${name} ? iscsi) (
        builtins.attrNames exampleSettings.hosts
      );

      # A Raspberry Pi 4 / 400 booting from the appliance; the initiator and
      # target prefix come from the appliance's TOML.
      mkPiClient =
        name: extraConfig:
        lib.nixosSystem {
          system = "aarch64-linux";
          modules = [
            nixos-hardware.nixosModules.raspberry-pi-4
            self.nixosModules.client
            {
              networking.hostName = name;
              netboot.client = {
                enable = true;
                appliance.address = applianceAddress;
                appliance.targetPrefix = exampleSettings.iscsi.target_prefix;
                # The host key doubles as the key the appliance's clientKeys admits.
                appliance.identityFile = "/etc/ssh/ssh_host_ed25519_key";
                # Pinned, so the non-interactive publish can verify the appliance.
                appliance.hostKey = exampleKeys.appliance;
                iscsi.initiatorName = exampleSettings.hosts.${name}.iscsi.initiator;
                initrdNetworkModules = [ "bcmgenet" ];
              };
              services.openssh.enable = true;
              system.stateVersion = "25.11";
            }
            extraConfig
          ];
        };
    in
    {
      packages = forAllSystems (pkgs: {
        netboot-appliance = pkgs.callPackage ./nixos/package.nix { };
        default = self.packages.${pkgs.stdenv.hostPlatform.system}.netboot-appliance;
      });

      overlays.default = import ./nixos/overlay.nix;

      nixosModules = {
        # With the overlay, so services.netboot-appliance.package defaults
        # to this flake's package (and follows further overlays).
        appliance = {
          imports = [ ./nixos/appliance.nix ];
          nixpkgs.overlays = [ self.overlays.default ];
        };
        client = ./nixos/client.nix;
        default = self.nixosModules.appliance;
      };

      # The generated appliance.toml of the example server, validated by
      # `netboot check` while it is built.
      checks.x86_64-linux = {
        example-appliance-config =
          self.nixosConfigurations.netboot-server.config.environment.etc."netboot/appliance.toml".source;
        # An appliance VM and a client VM that boots from it over TFTP and iSCSI.
        netboot-iscsi-root = nixpkgs.legacyPackages.x86_64-linux.testers.runNixOSTest {
          imports = [ ./nixos/tests/netboot-iscsi-root.nix ];
          defaults.nixpkgs.overlays = [ self.overlays.default ];
          _module.args.netbootModules = { inherit (self.nixosModules) appliance client; };
        };
      };

      nixosConfigurations = {
        # The boot server: an x86_64 box next to the NAS, LUN files on NFS.
        netboot-server = lib.nixosSystem {
          system = "x86_64-linux";
          modules = [
            self.nixosModules.appliance
            (
              { lib, pkgs, ... }:
              {
                services.netboot-appliance = {
                  enable = true;
                  openFirewall = true;
                  settings = lib.mkMerge [
                    exampleSettings
                    {
                      # The TOML names a directory for non-NixOS installs.
                      firmware.rpi.path = lib.mkForce "${pkgs.raspberrypifw}/share/raspberrypi/boot";
                    }
                  ];
                  # Each client's SSH host key, allowed to publish and confirm
                  # its own generations only.
                  clientKeys = lib.genAttrs clientNames (name: [ exampleKeys.clients.${name} ]);
                };

                # The Pi firmware blobs are unfree (redistributable).
                nixpkgs.config.allowUnfreePredicate =
                  pkg:
                  builtins.elem (lib.getName pkg) [
                    "raspberrypi-firmware"
                  ];

                # LUN files stay where the Synology keeps them; `hard` so LIO
                # I/O waits out a NAS reboot instead of failing.
                fileSystems."/mnt/nas/luns" = {
                  device = "nas.lan:/volume1/luns";
                  fsType = "nfs";
                  options = [
                    "nfsvers=4.1"
                    "hard"
                    "_netdev"
                  ];
                };

                networking.hostName = "netboot";
                networking.interfaces.eth0.ipv4.addresses = [
                  {
                    address = applianceAddress;
                    prefixLength = 24;
                  }
                ];
                services.openssh.enable = true;

                boot.loader.systemd-boot.enable = true;
                boot.loader.efi.canTouchEfiVariables = true;
                fileSystems."/" = {
                  device = "/dev/disk/by-label/nixos";
                  fsType = "ext4";
                };
                fileSystems."/boot" = {
                  device = "/dev/disk/by-label/ESP";
                  fsType = "vfat";
                };
                system.stateVersion = "25.11";
              }
            )
          ];
        };

        # The Raspberry Pi 400: no SD card, root on its LUN.
        pi-desktop = mkPiClient "pi-desktop" {
          # The appliance requires CHAP for this host (chap in the TOML): the
          # same user, and the secret its secret_file holds on the appliance.
          # It is copied into the initrd and the store (nixos/README.md).
          netboot.client.iscsi.chapConfigFile = ./examples/pi-desktop-iscsi-chap.conf;
          services.xserver.enable = true;
          services.xserver.desktopManager.xfce.enable = true;
        };
      }
      # The headless fleet: pi-node-1 … pi-node-7, all from the same TOML.
      // lib.genAttrs (builtins.filter (lib.hasPrefix "pi-node-") (builtins.attrNames exampleSettings.hosts)) (
        name: mkPiClient name { }
      );
    };
}
