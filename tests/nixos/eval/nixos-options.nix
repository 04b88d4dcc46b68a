# The NixOS options that nixos/appliance.nix, nixos/client.nix, the example
# flake and its VM test read or set — and only those — transcribed from
# nixpkgs with their real types, for evaluating the modules with
# lib.evalModules where no nixpkgs checkout is available. Each block names
# the nixpkgs file that declares it. Sub-options nobody here uses are left
# out of submodules; where nixpkgs checks a systemd section with a list of
# known keys, the check below keeps nixpkgs' assertions for the keys these
# modules use.
{ lib, pkgs, ... }:
let
  inherit (lib) mkOption types;

  # nixos/lib/systemd-lib.nix
  unitNameType = types.strMatching "[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)";
  boolValues = [
    true
    false
    "yes"
    "no"
  ];
  assertValueOneOf =
    name: values: group: attr:
    lib.optional (
      attr ? ${name} && !lib.elem attr.${name} values
    ) "Systemd ${group} field `${name}' cannot have value `${toString attr.${name}}'.";
  checkUnitConfig =
    group: checks: attrs:
    let
      defs = lib.mapAttrs (
        _: v:
        if v._type or "" == "override" then
          v.content
        else if v._type or "" == "if" then
          v.content
        else
          v
      ) attrs;
      errors = lib.concatMap (c: c group defs) checks;
    in
    if errors == [ ] then true else builtins.trace (lib.concatStringsSep "\n" errors) false;

  # nixos/lib/systemd-unit-options.nix
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge =
      loc: defs:
      let
        defs' = lib.filterOverrides defs;
      in
      if lib.any (def: lib.isList def.value) defs' then
        lib.concatMap (def: lib.toList def.value) defs'
      else
        lib.mergeEqualOption loc defs';
  };
  checkService = checkUnitConfig "Service" [
    (assertValueOneOf "Type" [
      "exec"
      "simple"
      "forking"
      "oneshot"
      "dbus"
      "notify"
      "notify-reload"
      "idle"
    ])
    (assertValueOneOf "Restart" [
      "no"
      "on-success"
      "on-failure"
      "on-abnormal"
      "on-abort"
      "always"
    ])
  ];
  unitList = mkOption {
    default = [ ];
    type = types.listOf unitNameType;
  };
  # systemd-unit-options.nix: commonUnitOptions + stage2CommonUnitOptions + serviceOptions
  serviceOptions =
    { options, ... }:
    {
      options = {
        enable = mkOption {
          default = true;
          type = types.bool;
        };
        description = mkOption {
          default = "";
          type = types.singleLineStr;
        };
        wantedBy = unitList;
        requiredBy = unitList;
        requires = unitList;
        wants = unitList;
        after = unitList;
        before = unitList;
        bindsTo = unitList;
        partOf = unitList;
        conflicts = unitList;
        unitConfig = mkOption {
          default = { };
          type = types.attrsOf unitOption;
        };
        startLimitIntervalSec = mkOption { type = types.int; };
        startLimitBurst = mkOption { type = types.int; };
        restartTriggers = mkOption {
          default = [ ];
          type = types.listOf types.unspecified;
        };
        reloadTriggers = mkOption {
          default = [ ];
          type = types.listOf unitOption;
        };
        environment = mkOption {
          default = { };
          type =
            with types;
            attrsOf (
              nullOr (oneOf [
                str
                path
                package
              ])
            );
        };
        path = mkOption {
          default = [ ];
          type =
            with types;
            listOf (oneOf [
              package
              str
            ]);
        };
        serviceConfig = mkOption {
          default = { };
          type = types.addCheck (types.attrsOf unitOption) checkService;
        };
        script = mkOption {
          type = types.lines;
          default = "";
        };
      };
    };

  # nixos/modules/system/boot/networkd.nix (networkOptions); the checks of
  # [Network] and [DHCPv4] keep nixpkgs' assertions for the keys used here.
  checkNetwork = checkUnitConfig "Network" [
    (assertValueOneOf "DHCP" (
      boolValues
      ++ [
        "ipv4"
        "ipv6"
      ]
    ))
    (assertValueOneOf "KeepConfiguration" (
      boolValues
      ++ [
        "static"
        "dynamic-on-stop"
        "dynamic"
      ]
    ))
  ];
  checkDhcpV4 = checkUnitConfig "DHCPv4" [
    (assertValueOneOf "ClientIdentifier" [
      "mac"
      "duid"
      "duid-only"
    ])
  ];
  networkOptions = {
    options = {
      enable = mkOption {
        default = true;
        type = types.bool;
      };
      matchConfig = mkOption {
        default = { };
        type = types.attrsOf unitOption;
      };
      networkConfig = mkOption {
        default = { };
        type = types.addCheck (types.attrsOf unitOption) checkNetwork;
      };
      dhcpV4Config = mkOption {
        default = { };
        type = types.addCheck (types.attrsOf unitOption) checkDhcpV4;
      };
      linkConfig = mkOption {
        default = { };
        type = types.attrsOf unitOption;
      };
    };
  };

  # nixos/modules/misc/nixpkgs.nix
  configType = lib.mkOptionType {
    name = "nixpkgs-config";
    description = "nixpkgs config";
    check = x: lib.isAttrs x || lib.isFunction x;
    merge = _: defs: lib.foldr (def: acc: lib.recursiveUpdate acc def.value) { } defs;
  };
  overlayType = lib.mkOptionType {
    name = "nixpkgs-overlay";
    description = "nixpkgs overlay";
    check = lib.isFunction;
    merge = lib.mergeOneOption;
  };
in
{
  # Declared into system.build's submodule, as nixpkgs does.
  imports = [
    {
      # nixos/modules/system/activation/activation-script.nix
    options.system.build.installBootLoader = mkOption {
        internal = true;
        default = "echo 'Warning: do not know how to make this configuration bootable; please enable a boot loader.' 1>&2; true";
        type = types.unique {
          message = "Only one bootloader can be enabled at a time.";
        } (types.either types.str types.package);
      };
    }
  ];

  options = {
    # nixos/modules/misc/assertions.nix
    assertions = mkOption {
      type = types.listOf types.unspecified;
      internal = true;
      default = [ ];
    };
    warnings = mkOption {
      internal = true;
      default = [ ];
      type = types.listOf types.str;
    };

    # nixos/modules/misc/nixpkgs.nix
    nixpkgs.config = mkOption {
      default = { };
      type = configType;
    };
    nixpkgs.overlays = mkOption {
      default = [ ];
      type = types.listOf overlayType;
    };

    # nixos/modules/misc/version.nix
    system.stateVersion = mkOption { type = types.str; };

    # nixos/modules/system/activation/top-level.nix
    system.build = mkOption {
      default = { };
      type = types.submoduleWith {
        modules = [ { freeformType = with types; lazyAttrsOf (uniq unspecified); } ];
      };
    };
    # nixos/modules/config/system-path.nix
    environment.systemPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
    };

    # nixos/modules/system/etc/etc.nix
    environment.etc = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule (
          { name, ... }:
          {
            options = {
              enable = mkOption {
                type = types.bool;
                default = true;
              };
              target = mkOption {
                type = types.str;
                default = name;
              };
              text = mkOption {
                default = null;
                type = types.nullOr types.lines;
              };
              source = mkOption { type = types.path; };
              mode = mkOption {
                type = types.str;
                default = "symlink";
              };
            };
          }
        )
      );
    };

    # nixos/modules/config/nix.nix
    nix.package = mkOption {
      type = types.package;
      default = pkgs.nix;
    };

    # nixos/modules/system/boot/kernel.nix
    boot.kernelModules = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
    boot.kernelParams = mkOption {
      type = types.listOf (
        types.strMatching ''([^"[:space:]]|"[^"]*")+''
        // {
          name = "kernelParam";
          description = "string, with spaces inside double quotes";
        }
      );
      default = [ ];
    };
    boot.initrd.kernelModules = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
    boot.initrd.availableKernelModules = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };

    # nixos/modules/system/boot/stage-1.nix
    boot.initrd.extraFiles = mkOption {
      default = { };
      type = types.attrsOf (types.submodule { options.source = mkOption { type = types.package; }; });
    };

    # nixos/modules/system/boot/systemd/initrd.nix
    boot.initrd.systemd.enable = mkOption {
      type = types.bool;
      default = false;
    };

    # nixos/modules/system/boot/initrd-network.nix
    boot.initrd.network.enable = mkOption {
      type = types.bool;
      default = false;
    };
    boot.initrd.network.udhcpc.enable = mkOption {
      type = types.bool;
      default = false;
    };
    boot.initrd.network.flushBeforeStage2 = mkOption {
      type = types.bool;
      default = true;
    };

    # nixos/modules/services/networking/iscsi/root-initiator.nix
    boot.iscsi-initiator = {
      name = mkOption {
        default = null;
        type = types.nullOr types.str;
      };
      discoverPortal = mkOption {
        default = null;
        type = types.nullOr types.str;
      };
      target = mkOption {
        default = null;
        type = types.nullOr types.str;
      };
      logLevel = mkOption {
        default = 1;
        type = types.int;
      };
      loginAll = mkOption {
        type = types.bool;
        default = false;
      };
      extraConfig = mkOption {
        default = null;
        type = types.nullOr types.lines;
      };
      extraConfigFile = mkOption {
        default = null;
        type = types.nullOr types.str;
      };
    };

    # nixos/modules/system/boot/loader/grub/grub.nix
    boot.loader.grub.enable = mkOption {
      default = true;
      type = types.bool;
    };
    # nixos/modules/system/boot/loader/generic-extlinux-compatible/default.nix
    boot.loader.generic-extlinux-compatible.enable = mkOption {
      default = false;
      type = types.bool;
    };
    # nixos/modules/system/boot/loader/systemd-boot/systemd-boot.nix
    boot.loader.systemd-boot.enable = mkOption {
      default = false;
      type = types.bool;
    };
    # nixos/modules/system/boot/loader/efi.nix
    boot.loader.efi.canTouchEfiVariables = mkOption {
      default = false;
      type = types.bool;
    };

    # nixos/modules/tasks/filesystems.nix (coreFileSystemOpts)
    fileSystems = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule (
          { name, ... }:
          {
            options = {
              mountPoint = mkOption {
                type = types.nonEmptyStr;
                default = name;
              };
              device = mkOption {
                default = null;
                type = types.nullOr types.nonEmptyStr;
              };
              fsType = mkOption {
                default = "auto";
                type = types.nonEmptyStr;
              };
              options = mkOption {
                default = [ "defaults" ];
                type = types.nonEmptyListOf types.nonEmptyStr;
              };
            };
          }
        )
      );
    };

    # nixos/modules/tasks/network-interfaces.nix
    networking.hostName = mkOption {
      # nixpkgs: config.system.nixos.distroId, which is "nixos".
      default = "nixos";
      type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$";
    };
    networking.useDHCP = mkOption {
      type = types.bool;
      default = true;
    };
    networking.useNetworkd = mkOption {
      default = false;
      type = types.bool;
    };
    networking.interfaces = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule {
          options.ipv4.addresses = mkOption {
            default = [ ];
            type = types.listOf (
              types.submodule {
                options = {
                  address = mkOption { type = types.str; };
                  prefixLength = mkOption { type = types.addCheck types.int (n: n >= 0 && n <= 32); };
                };
              }
            );
          };
          options.useDHCP = mkOption {
            type = types.nullOr types.bool;
            default = null;
          };
        }
      );
    };

    # nixos/modules/services/networking/firewall.nix
    networking.firewall.enable = mkOption {
      type = types.bool;
      default = true;
    };
    networking.firewall.allowedTCPPorts = mkOption {
      type = types.listOf types.port;
      default = [ ];
    };
    networking.firewall.allowedUDPPorts = mkOption {
      type = types.listOf types.port;
      default = [ ];
    };

    # nixos/modules/system/boot/systemd.nix
    systemd.services = mkOption {
      default = { };
      type = types.attrsOf (types.submodule serviceOptions);
    };
    # nixos/modules/system/boot/systemd/tmpfiles.nix
    systemd.tmpfiles.rules = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
    # nixos/modules/system/boot/networkd.nix
    systemd.network.enable = mkOption {
      default = false;
      type = types.bool;
    };
    systemd.network.networks = mkOption {
      default = { };
      type = types.attrsOf (types.submodule networkOptions);
    };

    # nixos/modules/config/users-groups.nix (users.users) with the
    # openssh.authorizedKeys sub-options of
    # nixos/modules/services/networking/ssh/sshd.nix
    users.users = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule {
          options.openssh.authorizedKeys.keys = mkOption {
            type = types.listOf types.singleLineStr;
            default = [ ];
          };
        }
      );
    };
    # nixos/modules/services/networking/ssh/sshd.nix
    services.openssh.enable = mkOption {
      type = types.bool;
      default = false;
    };

    # nixos/modules/programs/ssh.nix
    programs.ssh.knownHosts = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule (
          { name, ... }:
          {
            options = {
              certAuthority = mkOption {
                type = types.bool;
                default = false;
              };
              hostNames = mkOption {
                type = types.listOf types.str;
                default = [ name ];
              };
              publicKey = mkOption {
                default = null;
                type = types.nullOr types.str;
              };
              publicKeyFile = mkOption {
                default = null;
                type = types.nullOr types.path;
              };
            };
          }
        )
      );
    };

    # nixos/modules/virtualisation/qemu-vm.nix (the VM test's nodes)
    virtualisation.vlans = mkOption {
      type = types.listOf types.ints.unsigned;
      default = [ 1 ];
    };
    virtualisation.memorySize = mkOption {
      type = types.ints.positive;
      default = 1024;
    };
    virtualisation.additionalPaths = mkOption {
      type = types.listOf types.path;
      default = [ ];
    };
    virtualisation.useDefaultFilesystems = mkOption {
      type = types.bool;
      default = true;
    };
    virtualisation.useBootLoader = mkOption {
      type = types.bool;
      default = false;
    };
    virtualisation.directBoot.enable = mkOption {
      type = types.bool;
      default = true;
    };
    virtualisation.diskImage = mkOption {
      type = types.nullOr types.str;
      default = "./nixos.qcow2";
    };
    virtualisation.writableStore = mkOption {
      type = types.bool;
      default = true;
    };
    virtualisation.qemu.options = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };

    # nixos/modules/services/networking/dnsmasq.nix (settings: freeform
    # pkgs.formats.keyValue { listsAsDuplicateKeys = true; })
    services.dnsmasq.enable = mkOption {
      type = types.bool;
      default = false;
    };
    services.dnsmasq.settings = mkOption {
      default = { };
      type = types.submodule {
        freeformType =
          let
            atom = types.nullOr (
              types.oneOf [
                types.bool
                types.int
                types.float
                types.str
              ]
            );
          in
          types.attrsOf (types.coercedTo atom lib.singleton (types.listOf atom));
        options.server = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
      };
    };

    # nixos/modules/services/x11/xserver.nix
    services.xserver.enable = mkOption {
      type = types.bool;
      default = false;
    };
    # nixos/modules/services/x11/desktop-managers/xfce.nix
    services.xserver.desktopManager.xfce.enable = mkOption {
      type = types.bool;
      default = false;
    };
  };
}
