# services.netboot-appliance: the boot server (TFTP from the Nix store, root
# LUNs over iSCSI via kernel LIO) as a NixOS service. See nixos/README.md.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    concatLists
    concatStringsSep
    filter
    literalExpression
    mapAttrsToList
    mkDefault
    mkEnableOption
    mkIf
    mkOption
    optional
    optionals
    optionalString
    types
    unique
    ;

  cfg = config.services.netboot-appliance;
  netbootLib = import ./lib.nix;
  settingsFormat = pkgs.formats.toml { };

  # The CLI's default path: `netboot status` etc. find the daemon's config
  # without -c, and a config change becomes a reload, not a restart.
  configPath = "/etc/netboot/appliance.toml";

  settingsDocument = netbootLib.toSettings cfg.settings;

  canRunCheck = pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform;

  configFile =
    pkgs.runCommand "netboot-appliance.toml"
      {
        preferLocalBuild = true;
        # The document as JSON data, for whoever inspects the configuration.
        passthru.document = builtins.toJSON settingsDocument;
      }
      ''
        cp ${settingsFormat.generate "appliance.toml" settingsDocument} $out
        ${optionalString (cfg.checkConfig && canRunCheck) ''
          # Refuse a bad configuration at build time, with every problem listed.
          ${lib.getExe cfg.package} -c $out check --no-files
        ''}
      '';

  hosts = cfg.settings.hosts;
  badHostNames = filter (name: !netbootLib.isHostName name) (builtins.attrNames hosts);
  unknownKeyHosts = filter (name: !(hosts ? ${name})) (builtins.attrNames cfg.clientKeys);
  stateDir = cfg.settings.server.state_dir;
  # The directory's components, so "/var/lib/netboot/" and "/var/lib//netboot" count as
  # /var/lib/netboot; it must be a directory of its own (at least two deep, not /var/lib).
  stateDirParts = filter (part: part != "") (lib.splitString "/" stateDir);
  stateDirOwn = builtins.length stateDirParts >= 2 && stateDirParts != [ "var" "lib" ];
  # systemd creates StateDirectory= only below /var/lib; elsewhere tmpfiles does.
  stateInVarLib = stateDirOwn && lib.take 2 stateDirParts == [ "var" "lib" ];
  stateDirectoryName = concatStringsSep "/" (lib.drop 2 stateDirParts);
  iscsiEnabled = cfg.settings.iscsi.enable;
  # The optional proxyDHCP binds :67/:4011 to one interface (SO_BINDTODEVICE needs CAP_NET_RAW).
  dhcpEnabled = (cfg.settings.dhcp or { }).enable or false;

  # ProtectHome=true hides these, and systemd drops ReadWritePaths= below them; with
  # ProtectHome=tmpfs what BindPaths=/BindReadOnlyPaths= list stays visible.
  underHome = path: lib.any (dir: path == dir || lib.hasPrefix "${dir}/" path) [ "/home" "/root" "/run/user" ];
  secretFiles = concatLists (
    mapAttrsToList (
      _: host:
      if host.iscsi == null || host.iscsi.chap == null then
        [ ]
      else
        filter (f: f != null) [
          host.iscsi.chap.secret_file
          host.iscsi.chap.mutual_secret_file
        ]
    ) hosts
  );
  homeSecretFiles = filter underHome secretFiles;
  homeLunDirs = optionals iscsiEnabled (filter underHome lunFileDirs);

  hostLuns = filter (lun: lun != null) (
    mapAttrsToList (_: host: if host.iscsi == null then null else host.iscsi.lun) hosts
  );
  lunFileDirs = unique (map (lun: dirOf lun.file) (filter (lun: lun.file != null) hostLuns));

  absolutePath =
    types.addCheck types.str (lib.hasPrefix "/")
    // {
      description = "absolute path (a string, so nothing is copied into the Nix store)";
    };

  # The appliance's own rules (appliance/config/values.py), so a typo stops here.
  inherit (netbootLib.optionTypes types) iscsiName listenAddress macAddress targetPrefix;

  chapType = types.submodule {
    # Free-form only so that an inline `secret` reaches the assertion below
    # with a clear message instead of "option does not exist".
    freeformType = settingsFormat.type;
    options = {
      user = mkOption {
        type = types.str;
        description = "CHAP user name the initiator logs in with.";
      };
      secret_file = mkOption {
        # null only so that a missing file (or an inline `secret`) gets the
        # module's own assertion rather than "used but not defined".
        type = types.nullOr absolutePath;
        default = null;
        example = "/run/secrets/netboot/pi-desktop-chap";
        description = ''
          File holding the CHAP secret (12–16 characters for most initiators).
          Read by the appliance at run time; never put the secret itself in
          the configuration (the Nix store is world-readable).
        '';
      };
      mutual_user = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "User name for mutual CHAP (the target authenticating to the initiator).";
      };
      mutual_secret_file = mkOption {
        type = types.nullOr absolutePath;
        default = null;
        description = "File holding the mutual CHAP secret.";
      };
    };
  };

  lunType = types.submodule {
    options = {
      file = mkOption {
        type = types.nullOr absolutePath;
        default = null;
        example = "/mnt/nas/luns/pi-desktop.img";
        description = ''
          Backing file of the root LUN (LIO fileio). Created sparse at
          {option}`size` when missing; never truncated or deleted. Give
          exactly one of `file` and `block`.
        '';
      };
      size = mkOption {
        type = types.nullOr (types.either types.str types.ints.positive);
        default = null;
        example = "128G";
        description = "Size of a file LUN: bytes, or a string such as `\"128G\"` (binary units).";
      };
      block = mkOption {
        type = types.nullOr absolutePath;
        default = null;
        example = "/dev/zvol/tank/pi-desktop";
        description = "Block device backing the root LUN (LIO iblock).";
      };
    };
  };

  hostType = types.submodule (
    { name, config, ... }:
    {
      freeformType = settingsFormat.type;
      options = {
        boot = mkOption {
          type = types.enum (map (style: style.name) netbootLib.bootStyles);
          description = "How the host boots: "
            + builtins.concatStringsSep "; " (map (style: "`${style.name}` (${style.description})") netbootLib.bootStyles)
            + ".";
        };
        mac = mkOption {
          type = types.nullOr macAddress;
          default = null;
          example = "dc:a6:32:01:02:03";
          description = "MAC address the host boots from (required for uboot and ipxe, and for `tftp_prefix = \"mac\"`).";
        };
        tftp_prefix = mkOption {
          type = types.nullOr types.str;
          default = null;
          defaultText = literalExpression ''"mac" (the appliance's default)'';
          example = "pi-desktop/";
          description = ''
            TFTP directory of the host: `"mac"` (`dc-a6-32-01-02-03/`, Pi
            EEPROM `TFTP_PREFIX=2`), `"serial"` (`9ffefdef/`, `TFTP_PREFIX=0`)
            or any literal directory (`TFTP_PREFIX=1` with `TFTP_PREFIX_STR`).
          '';
        };
        serial = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "9ffefdef";
          description = "Raspberry Pi serial number (needed with `tftp_prefix = \"serial\"`).";
        };
        profile = mkOption {
          type = absolutePath;
          default = "/nix/var/nix/profiles/netboot/${name}";
          defaultText = literalExpression ''"/nix/var/nix/profiles/netboot/<name>"'';
          description = ''
            Nix profile whose generations the host boots; `netboot register`
            adds generations to it.
          '';
        };
        cmdline = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "console=serial0,115200 console=tty1";
          description = ''
            Appended to `init=<toplevel>/init <kernel-params>` in the kernel
            command line. Hosts using `netboot.client` get `ip=dhcp`, `root=`
            and `rootwait` from their own kernel params already.
          '';
        };
        config_txt = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [
            "dtoverlay=vc4-kms-v3d"
            "max_framebuffers=2"
          ];
          description = "Extra `config.txt` lines for rpi hosts.";
        };
        firmware = mkOption {
          type = types.nullOr types.str;
          default = null;
          defaultText = literalExpression ''"rpi" for rpi hosts'';
          description = "Name of the `firmware.<name>` table this host's firmware blobs come from.";
        };
        allow_eeprom_update = mkOption {
          type = types.bool;
          default = false;
          description = ''
            Serve `pieeprom.upd`, `pieeprom.sig` and `recovery.bin`. Off, so a
            boot can never re-flash the Pi's EEPROM by accident.
          '';
        };
        tftp_access = mkOption {
          type = types.enum [
            "open"
            "strict"
          ];
          # A CHAP host's initrd carries its iSCSI secret: serve it to
          # nobody whose MAC cannot be checked.
          default = if config.iscsi != null && config.iscsi.chap != null then "strict" else "open";
          defaultText = literalExpression ''if iscsi.chap != null then "strict" else "open"'';
          description = ''
            For clients whose MAC address cannot be determined (routed
            networks): `open` serves the tree anyway, `strict` refuses. A
            known MAC asking for another host's tree is always refused.
            Hosts with CHAP default to `strict`: their initrd holds the
            CHAP secret (see `netboot.client.iscsi.chapConfigFile`).
          '';
        };
        menu_timeout = mkOption {
          type = types.nullOr types.ints.unsigned;
          default = null;
          defaultText = literalExpression "5";
          description = "Seconds the U-Boot / iPXE generation menu waits.";
        };
        trial_confirm_after = mkOption {
          type = types.nullOr types.ints.positive;
          default = null;
          defaultText = literalExpression "120";
          description = "Seconds of iSCSI session after which a trial boot counts as confirmed.";
        };
        trial_timeout = mkOption {
          type = types.nullOr types.ints.positive;
          default = null;
          defaultText = literalExpression "900";
          description = "Seconds after which an unconfirmed trial reverts to the last confirmed generation.";
        };
        iscsi = mkOption {
          default = null;
          description = "The host's root disk over iSCSI.";
          type = types.nullOr (
            types.submodule {
              options = {
                initiator = mkOption {
                  type = iscsiName;
                  example = "iqn.2026-04.net.ereslibre:pi-desktop";
                  description = "Initiator IQN of the host: the only one the LUN's ACL admits.";
                };
                lun = mkOption {
                  type = lunType;
                  description = "Backing store of the host's root LUN.";
                };
                chap = mkOption {
                  type = types.nullOr chapType;
                  default = null;
                  description = "CHAP credentials (secrets only as files).";
                };
              };
            }
          );
        };
      };
    }
  );

  settingsType = types.submodule {
    freeformType = settingsFormat.type;
    options = {
      server = mkOption {
        default = { };
        description = "Server-wide settings.";
        type = types.submodule {
          freeformType = settingsFormat.type;
          options = {
            state_dir = mkOption {
              type = absolutePath;
              default = "/var/lib/netboot";
              description = "Pins, trials, last-known-good generations and boot history.";
            };
            store_dir = mkOption {
              type = absolutePath;
              default = builtins.storeDir;
              defaultText = literalExpression "builtins.storeDir";
              description = "Nix store every served file must resolve into.";
            };
            tftp_listen = mkOption {
              type = types.listOf listenAddress;
              default = [ "0.0.0.0:69" ];
              example = [
                "10.0.4.3:69"
                "[::]:69"
              ];
              description = "Addresses (`host:port`) the TFTP server listens on.";
            };
            http_listen = mkOption {
              type = types.listOf listenAddress;
              default = [ ];
              example = [ "10.0.4.3:8080" ];
              description = ''
                Addresses (`host:port`) of the HTTP transport (the same per-host trees and
                access rules as TFTP); iPXE then loads kernels and initrds over HTTP. Off when empty.
              '';
            };
            gcroots_dir = mkOption {
              type = absolutePath;
              default = "/nix/var/nix/gcroots/netboot";
              description = "Where the appliance keeps GC roots for every generation it may serve.";
            };
            metrics_listen = mkOption {
              type = types.nullOr listenAddress;
              default = null;
              example = "127.0.0.1:9469";
              description = "Address of the Prometheus metrics endpoint; off when null.";
            };
          };
        };
      };
      iscsi = mkOption {
        default = { };
        description = "Root LUNs exported through kernel LIO.";
        type = types.submodule {
          freeformType = settingsFormat.type;
          options = {
            enable = mkOption {
              type = types.bool;
              default = false;
              description = "Export the hosts' root LUNs over iSCSI (loads the LIO kernel modules).";
            };
            portals = mkOption {
              type = types.listOf listenAddress;
              default = [ ];
              example = [ "10.0.4.3:3260" ];
              description = "Portal addresses (`ip:port`) of every target.";
            };
            target_prefix = mkOption {
              type = targetPrefix;
              default = netbootLib.defaultTargetPrefix;
              example = "iqn.2026-04.net.ereslibre.netboot";
              description = "Target IQN of host H is `<target_prefix>:H` (no `:` in the prefix).";
            };
          };
        };
      };
      firmware = mkOption {
        default = { };
        description = ''
          Firmware trees by name; rpi hosts use `firmware.rpi` unless they
          name another. When an rpi host exists, `firmware.rpi.path` defaults
          to `pkgs.raspberrypifw` (unfree-redistributable: allow it with
          `nixpkgs.config.allowUnfreePredicate`).
        '';
        type = types.attrsOf (
          types.submodule {
            freeformType = settingsFormat.type;
            options.path = mkOption {
              type = types.either types.path absolutePath;
              example = literalExpression ''"''${pkgs.raspberrypifw}/share/raspberrypi/boot"'';
              description = "Directory of firmware blobs (`start4.elf`, `fixup4.dat`, `overlays/`, …).";
            };
          }
        );
      };
      hosts = mkOption {
        default = { };
        description = "The machines that boot from the appliance, by name (lower-case letters, digits, `-`).";
        type = types.attrsOf hostType;
      };
    };
  };

  # Forced command for a client's SSH key: it may copy store paths and
  # register or confirm its own host, nothing else.
  clientGate = pkgs.writeShellApplication {
    name = "netboot-client-gate";
    runtimeInputs = [
      cfg.package
      config.nix.package
    ];
    text = ''
      host=$1
      read -r -a argv <<< "''${SSH_ORIGINAL_COMMAND:-}"
      case "''${argv[0]:-}" in
        nix-daemon)
          if [ "''${argv[*]}" = "nix-daemon --stdio" ]; then exec nix-daemon --stdio; fi
          ;;
        netboot)
          case "''${argv[1]:-}" in
            register)
              if [ "''${#argv[@]}" = 4 ] && [ "''${argv[2]}" = "$host" ] && [[ "''${argv[3]}" == ${builtins.storeDir}/* ]]; then
                exec netboot register "$host" "''${argv[3]}"
              fi
              ;;
            confirm)
              if [ "''${#argv[@]}" = 3 ] && [ "''${argv[2]}" = "$host" ]; then
                exec netboot confirm "$host"
              fi
              ;;
          esac
          ;;
      esac
      echo "netboot: refused for client $host: ''${SSH_ORIGINAL_COMMAND:-<no command>}" >&2
      exit 1
    '';
  };
in
{
  options.services.netboot-appliance = {
    enable = mkEnableOption "the netboot appliance (TFTP from the Nix store, iSCSI root disks via LIO)";

    # pkgs.netboot-appliance comes from nixos/overlay.nix, which the flake's
    # nixosModules.appliance applies.
    package = lib.mkPackageOption pkgs "netboot-appliance" { };

    clientGate = mkOption {
      type = types.package;
      readOnly = true;
      internal = true;
      default = clientGate;
      description = "The forced command of every key in {option}`clientKeys`.";
    };

    settings = mkOption {
      type = settingsType;
      default = { };
      example = literalExpression "builtins.fromTOML (builtins.readFile ./examples/appliance.toml)";
      description = ''
        The appliance configuration, written to `${configPath}` as TOML
        (schema: README.md, "Configuration"). Options left at `null` are omitted, so the
        appliance's own defaults apply. Secrets are only ever file paths.
      '';
    };

    checkConfig = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Validate the generated file with `netboot check --no-files` at build
        time (skipped when cross-compiling).
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Open the TFTP ports (UDP, 69 by default), the HTTP ports (TCP) when http_listen is set,
        with the proxyDHCP UDP 67 and 4011 and, with iSCSI enabled, the
        portal ports (TCP, 3260 by default). Not the metrics endpoint. Transfers continue from
        ephemeral ports, which the stateful firewall admits as replies.
      '';
    };

    clientKeys = mkOption {
      type = types.attrsOf (types.listOf types.str);
      default = { };
      example = literalExpression ''{ pi-desktop = [ "ssh-ed25519 AAAA… root@pi-desktop" ]; }'';
      description = ''
        SSH public keys, per host, allowed to publish generations: each key
        is added to root's authorized keys restricted to `nix-daemon --stdio`
        (for `nix copy --to ssh-ng://…`) and `netboot register|confirm` of
        its own host. Note that a key able to copy store paths can add any
        path to the store; it cannot make another host boot it.
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.clientKeys != { } -> config.services.openssh.enable;
        message = ''
          services.netboot-appliance.clientKeys: clients publish over SSH
          (nix copy --to ssh-ng://, netboot register), so the appliance needs
          services.openssh.enable = true.
        '';
      }
      {
        assertion = netbootLib.inlineSecretKeys cfg.settings == [ ];
        message = ''
          services.netboot-appliance.settings: CHAP secrets must not be written
          in the configuration (it ends up in the world-readable Nix store); put
          each secret in a file and use secret_file / mutual_secret_file instead of:
            ${concatStringsSep "\n    " (netbootLib.inlineSecretKeys cfg.settings)}
        '';
      }
      {
        assertion = netbootLib.storeSecretFiles cfg.settings == [ ];
        message = ''
          services.netboot-appliance.settings: these CHAP secret files lie in the
          world-readable Nix store; keep them outside it (e.g. /run/secrets):
            ${concatStringsSep "\n    " (netbootLib.storeSecretFiles cfg.settings)}
        '';
      }
      {
        assertion = netbootLib.unitUnsafePaths cfg.settings == [ ];
        message = ''
          services.netboot-appliance.settings: these paths contain whitespace, `%`, a quote
          or a backslash, which the generated systemd unit and tmpfiles rules would split
          or expand; choose paths without them:
            ${concatStringsSep "\n    " (map (p: "services.netboot-appliance.settings.${p}") (netbootLib.unitUnsafePaths cfg.settings))}
        '';
      }
      {
        # Checked here too: a cross-compiled build cannot run `netboot check`.
        assertion = netbootLib.duplicateMacs cfg.settings == [ ];
        message = ''
          services.netboot-appliance.settings: a MAC address identifies one host; fix:
            ${concatStringsSep "\n    " (netbootLib.duplicateMacs cfg.settings)}
        '';
      }
      {
        assertion = badHostNames == [ ];
        message = ''
          services.netboot-appliance.settings.hosts: host names are lower-case letters, digits
          and '-' (they become part of IQNs and LIO names); rename:
            ${concatStringsSep "\n    " (map builtins.toJSON badHostNames)}
        '';
      }
      {
        assertion = unknownKeyHosts == [ ];
        message = ''
          services.netboot-appliance.clientKeys: no host of that name in settings.hosts
          (${concatStringsSep ", " (builtins.attrNames hosts)}), so every register and
          confirm of these keys would be refused:
            ${concatStringsSep "\n    " (map (name: "clientKeys.${name}") unknownKeyHosts)}
        '';
      }
      {
        assertion = stateDirOwn;
        message = ''
          services.netboot-appliance.settings.server.state_dir = "${stateDir}": use a directory of
          the appliance's own, such as /var/lib/netboot (the unit makes it root-only, 0750).
        '';
      }
      {
        assertion = iscsiEnabled -> cfg.settings.iscsi.portals != [ ];
        message = "services.netboot-appliance.settings.iscsi.portals: iSCSI is enabled but no portal (ip:port) is listed.";
      }
    ]
    ++ mapAttrsToList (name: host: {
      assertion = host.iscsi == null || ((host.iscsi.lun.file == null) != (host.iscsi.lun.block == null));
      message = "services.netboot-appliance.settings.hosts.${name}.iscsi.lun needs exactly one of file or block.";
    }) hosts
    ++ mapAttrsToList (name: host: {
      assertion = host.iscsi == null || host.iscsi.chap == null || host.iscsi.chap.secret_file != null;
      message = "services.netboot-appliance.settings.hosts.${name}.iscsi.chap needs secret_file (a file outside the Nix store holding the CHAP secret).";
    }) hosts;

    services.netboot-appliance.settings.firmware = mkIf (netbootLib.rpiHosts cfg.settings != [ ]) {
      rpi.path = mkDefault "${pkgs.raspberrypifw}/share/raspberrypi/boot";
    };

    environment.etc."netboot/appliance.toml".source = configFile;
    environment.systemPackages = [ cfg.package ];

    # LIO core and backstores are loaded at boot, so the service needs no
    # CAP_SYS_MODULE; configfs is mounted by systemd's sys-kernel-config.mount.
    # Not iscsi_target_mod: the kernel accepts a new database root
    # (/sys/kernel/config/target/dbroot, which rtslib sets to /etc/target)
    # only while no fabric is registered. The kernel loads the fabric module
    # itself when the service first creates /sys/kernel/config/target/iscsi.
    boot.kernelModules = optionals iscsiEnabled [
      "configfs"
      "target_core_mod"
      "target_core_file"
      "target_core_iblock"
    ];

    systemd.tmpfiles.rules = [
      "d ${cfg.settings.server.gcroots_dir} 0755 root root -"
    ]
    ++ optional (stateDirOwn && !stateInVarLib) "d ${stateDir} 0750 root root -"
    # Created (root, 0755) when missing; an existing one, perhaps a user's per-user
    # profile directory, keeps its owner and mode ("-": tmpfiles adjusts neither).
    ++ map (dir: "d ${dir} - - - -") (netbootLib.profileDirs cfg.settings)
    # rtslib keeps LIO's database root (persistent reservations) here.
    ++ optional iscsiEnabled "d /etc/target 0700 root root -";

    networking.firewall = mkIf cfg.openFirewall {
      allowedUDPPorts = netbootLib.tftpPorts cfg.settings ++ optionals dhcpEnabled [ 67 4011 ];
      allowedTCPPorts = netbootLib.iscsiPorts cfg.settings ++ netbootLib.httpPorts cfg.settings;
    };

    # One authorized_keys line per key line: a string read from a .pub file may hold
    # several keys, each of which gets the forced command; blank and # lines are dropped.
    users.users.root.openssh.authorizedKeys.keys = concatLists (
      mapAttrsToList (
        host: keys:
        map (key: ''restrict,command="${lib.getExe clientGate} ${host}" ${key}'') (
          filter (line: builtins.match "[[:space:]]*(#.*)?" line == null) (
            concatLists (map (key: lib.splitString "\n" key) keys)
          )
        )
      ) cfg.clientKeys
    );

    systemd.services.netboot-appliance = {
      description = "Netboot appliance: TFTP from the Nix store, iSCSI root disks";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ] ++ optional iscsiEnabled "sys-kernel-config.mount";
      after = [
        "network-online.target"
        "systemd-modules-load.service"
      ]
      ++ optional iscsiEnabled "sys-kernel-config.mount";
      # A new configuration is a SIGHUP: transfers and LIO sessions go on.
      reloadTriggers = [ configFile ];

      unitConfig = {
        # File LUNs usually live on an NFS share: wait for it to be mounted.
        RequiresMountsFor = optionals iscsiEnabled lunFileDirs;
      };

      serviceConfig = {
        Type = "notify";
        NotifyAccess = "main";
        # -c before the command: it is the CLI's global option.
        ExecStart = lib.escapeShellArgs [
          (lib.getExe cfg.package)
          "-c"
          configPath
          "serve"
        ];
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        # No ExecStop touching LIO: stopping or restarting the appliance must
        # leave every target in place, so running hosts keep their root disks.
        Restart = "on-failure";
        RestartSec = "2s";
        TimeoutStopSec = "30s";

        StateDirectory = mkIf stateInVarLib stateDirectoryName;
        StateDirectoryMode = mkIf stateInVarLib "0750";
        UMask = "0027";

        # Runs as root because LIO's configfs tree, /etc/target, the profiles
        # and the GC roots are root-owned: as their owner it needs no
        # CAP_DAC_OVERRIDE. What is left: binding :69; with iSCSI,
        # CAP_SYS_ADMIN, because the kernel checks it on every read and write
        # of the iSCSI CHAP attributes (auth/userid, auth/password, … in
        # drivers/target/iscsi/iscsi_target_configfs.c), which rtslib reads
        # for every ACL; with the proxyDHCP, CAP_NET_RAW (SO_BINDTODEVICE).
        # qemu-tests/test_lio.py applies a plan in the LIO VM under exactly
        # this bounding set, and shows it fails without CAP_SYS_ADMIN.
        # (No AmbientCapabilities: they only matter for a non-root user.)
        CapabilityBoundingSet = [
          "CAP_NET_BIND_SERVICE"
        ]
        ++ optional iscsiEnabled "CAP_SYS_ADMIN"
        ++ optional dhcpEnabled "CAP_NET_RAW";
        NoNewPrivileges = true;

        ProtectSystem = "strict";
        ReadWritePaths = [
          stateDir
          cfg.settings.server.gcroots_dir
        ]
        ++ optionals iscsiEnabled (
          [
            "-/sys/kernel/config"
            "/etc/target"
            # The iSCSI apply lock (appliance/iscsi/api.py), shared with `netboot iscsi apply`.
            "/run/lock"
          ]
          # The appliance creates missing LUN files (sparse) at their size.
          ++ map (dir: "-${dir}") lunFileDirs
        );
        # LIO lives in configfs under /sys, which this would make read-only.
        ProtectKernelTunables = !iscsiEnabled;
        # Block LUNs are opened by path from this namespace: keep the real /dev.
        PrivateDevices = !iscsiEnabled;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectHome = if homeSecretFiles != [ ] || homeLunDirs != [ ] then "tmpfs" else true;
        # "-": a missing file is the appliance's to report, not a unit that cannot start.
        BindReadOnlyPaths = mkIf (homeSecretFiles != [ ]) (map (f: "-${f}") homeSecretFiles);
        BindPaths = mkIf (homeLunDirs != [ ]) (map (d: "-${d}") homeLunDirs);
        PrivateTmp = true;
        # Not ProcSubset=pid: rtslib reads /proc/modules.
        ProtectProc = "invisible";
        # AF_NETLINK: the kernel neighbour table (client IP → MAC).
        RestrictAddressFamilies = [
          "AF_UNIX"
          "AF_INET"
          "AF_INET6"
          "AF_NETLINK"
        ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
        ];
      };
    };
  };
}
