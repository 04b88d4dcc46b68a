# netboot.client: a NixOS host that boots from the appliance — kernel and
# initrd over TFTP, root file system on an iSCSI LUN, no local boot loader —
# and publishes each new generation to the appliance. See nixos/README.md.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    escapeShellArg
    escapeShellArgs
    literalExpression
    mkDefault
    mkEnableOption
    mkIf
    mkMerge
    mkOption
    optionals
    types
    ;

  cfg = config.netboot.client;
  netbootLib = import ./lib.nix;
  # The appliance's rules for iSCSI names: a name it would refuse could never log in.
  netbootTypes = netbootLib.optionTypes types;

  sshArgs = [
    "-o"
    "BatchMode=yes"
  ]
  ++ optionals (cfg.appliance.identityFile != null) [
    "-i"
    cfg.appliance.identityFile
  ]
  ++ cfg.appliance.sshOptions;

  # Nix from 2.26 splits NIX_SSHOPTS like a shell (NixOS/nix#12020), so an
  # option with spaces (ProxyCommand=…) stays one argument; older Nix splits
  # on whitespace and does not unquote, hence the assertion below.
  nixUnquotesSshOpts = lib.versionAtLeast (lib.getVersion config.nix.package) "2.26";
  nixSshOpts = if nixUnquotesSshOpts then escapeShellArgs sshArgs else lib.concatStringsSep " " sshArgs;

  # Called by switch-to-configuration as the boot loader installer (for
  # `nixos-rebuild switch` and `boot`, not `test`), and by hand:
  #   netboot-publish [TOPLEVEL]
  publishScript = pkgs.writeShellApplication {
    name = "netboot-publish";
    runtimeInputs = [
      config.nix.package
      pkgs.openssh
      pkgs.coreutils
    ];
    text = ''
      toplevel=$(readlink -f "''${1:-/nix/var/nix/profiles/system}")
      appliance=${escapeShellArg cfg.appliance.ssh}
      host=${escapeShellArg cfg.hostName}
      ssh_args=(${escapeShellArgs sshArgs})
      export NIX_SSHOPTS=${escapeShellArg nixSshOpts}

      echo "netboot: copying $toplevel to $appliance" >&2
      nix --extra-experimental-features nix-command copy --to "ssh-ng://$appliance" "$toplevel"
      echo "netboot: registering it as the next generation of $host" >&2
      # ssh hands the remote shell one command line: quote it for that shell
      # here, so a path with spaces or quotes stays one argument there.
      remote=$(printf '%q ' netboot register "$host" "$toplevel")
      # shellcheck disable=SC2029 # expanded here on purpose, escaped above
      ssh "''${ssh_args[@]}" "$appliance" "$remote"
    '';
  };
in
{
  options.netboot.client = {
    enable = mkEnableOption ''
      booting this host from a netboot appliance: kernel and initrd over
      TFTP, the root file system on an iSCSI LUN, no local boot loader.

      The iSCSI root uses NixOS's {option}`boot.iscsi-initiator`, which only
      exists in the scripted initrd, so this module sets
      {option}`boot.initrd.systemd.enable` to false (with `mkDefault`, over
      the nixpkgs default) and refuses a configuration that forces it on.
      nixpkgs is retiring the scripted initrd; the plan for systemd stage 1
      is in nixos/README.md'';

    hostName = mkOption {
      type = types.strMatching "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?";
      default = config.networking.hostName;
      defaultText = literalExpression "config.networking.hostName";
      example = "pi-desktop";
      description = "Name of this host in the appliance's `hosts` table.";
    };

    appliance = {
      address = mkOption {
        type = types.str;
        example = "10.0.4.3";
        description = "Address of the appliance (its iSCSI portal and SSH).";
      };
      portal = mkOption {
        type = types.str;
        # An IPv6 literal is bracketed: unbracketed, ":3260" would read as part of the address.
        default =
          if lib.hasInfix ":" cfg.appliance.address then
            "[${cfg.appliance.address}]:3260"
          else
            "${cfg.appliance.address}:3260";
        defaultText = literalExpression ''"''${config.netboot.client.appliance.address}:3260" (IPv6 in brackets)'';
        description = "iSCSI portal (`ip:port`) to discover the root target on.";
      };
      targetPrefix = mkOption {
        type = netbootTypes.targetPrefix;
        default = netbootLib.defaultTargetPrefix;
        example = "iqn.2026-04.net.ereslibre.netboot";
        description = "The appliance's `iscsi.target_prefix`; the root target is `<targetPrefix>:<hostName>`.";
      };
      ssh = mkOption {
        type = types.str;
        default = "root@${cfg.appliance.address}";
        defaultText = literalExpression ''"root@''${config.netboot.client.appliance.address}"'';
        description = ''
          SSH destination on the appliance for publishing and confirming.
          On the appliance, list this host's public key in
          {option}`services.netboot-appliance.clientKeys` to restrict it to
          exactly that.
        '';
      };
      identityFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/etc/ssh/ssh_host_ed25519_key";
        description = ''
          Private key (a path on this host, not in the store) used to reach
          the appliance. The host key is a convenient choice: it already
          exists and lives on the root LUN.
        '';
      };
      hostKey = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "ssh-ed25519 AAAA…";
        description = ''
          The appliance's SSH host key (`cat /etc/ssh/ssh_host_ed25519_key.pub`
          on the appliance), added to the known hosts: publishing and
          confirming run `ssh -o BatchMode=yes`, which cannot accept an
          unknown host key. Required while publish or confirm is enabled.
        '';
      };
      sshOptions = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [
          "-p"
          "2222"
        ];
        description = "Extra `ssh` arguments (also used by `nix copy` via NIX_SSHOPTS).";
      };
    };

    iscsi = {
      initiatorName = mkOption {
        type = netbootTypes.iscsiName;
        example = "iqn.2026-04.net.ereslibre:pi-desktop";
        description = "This host's initiator IQN: the appliance's `hosts.<name>.iscsi.initiator`.";
      };
      target = mkOption {
        type = types.str;
        default = netbootLib.targetIqn cfg.appliance.targetPrefix cfg.hostName;
        defaultText = literalExpression ''"''${appliance.targetPrefix}:''${hostName}"'';
        description = "Target IQN holding the root LUN (the appliance names it `<target_prefix>:<host>`).";
      };
      chapConfigFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = literalExpression "./secrets/pi-desktop-iscsi-chap.conf";
        description = ''
          iscsid.conf lines with the CHAP credentials, e.g.

              node.session.auth.authmethod = CHAP
              node.session.auth.username = pi-desktop
              node.session.auth.password = …

          Where the secret lives: without a boot loader there is nowhere to
          append initrd secrets at install time, so this file is copied into
          this host's Nix store and its initrd — and, through `nix copy`
          when publishing, into the appliance's Nix store. Anyone who can
          read either store, or fetch this host's initrd, can read it. The
          appliance therefore serves a host's files only to that host's MAC
          address, and refuses clients whose MAC it cannot check for hosts
          with CHAP (`tftp_access = "strict"`, the default for them).
          Treat it as a credential that only stops other machines on the
          LAN from mounting this LUN, not as a secret from the appliance's
          or this host's users.
        '';
      };
    };

    rootDevice = mkOption {
      type = types.str;
      default = "/dev/disk/by-label/PIROOT";
      description = "The root file system on the LUN.";
    };

    rootFsType = mkOption {
      type = types.str;
      default = "ext4";
      description = "File system type of {option}`netboot.client.rootDevice`.";
    };

    network.enable = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Configure stage 2 networking with systemd-networkd (which
        {option}`boot.iscsi-initiator` switches on): DHCP on wired
        interfaces, keeping the address the initrd obtained, so the root
        disk never loses its network while the lease is renewed. Both
        stages send the MAC address as DHCP client identifier (udhcpc in
        the initrd does by default; networkd with `ClientIdentifier=mac`),
        so the DHCP server sees one client and hands out one lease.
      '';
    };

    initrdNetworkModules = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "bcmgenet" ];
      description = "Kernel modules of the boot network card, loaded early in the initrd.";
    };

    kernelParams = mkOption {
      type = types.listOf types.str;
      default = [
        "root=${cfg.rootDevice}"
        "rootfstype=${cfg.rootFsType}"
        "rootwait"
      ];
      defaultText = literalExpression ''
        [ "root=''${rootDevice}" "rootfstype=''${rootFsType}" "rootwait" ]
      '';
      description = ''
        Kernel parameters the netboot needs. They end up in the
        generation's kernel-params, which the appliance puts in
        `cmdline.txt`, so the appliance's `cmdline` for this host should
        not repeat them. No `ip=dhcp`: the initrd's udhcpc brings the
        network up (the kernel's and klibc's `ip=dhcp` send no client
        identifier, so the DHCP server would see two clients).
      '';
    };

    publish = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Publish every generation that becomes the boot default
          (`nixos-rebuild switch` or `boot`) to the appliance: `nix copy`
          of the toplevel, then `netboot register`. It takes the place of
          the boot loader installation, so a failed publish fails the
          rebuild loudly instead of silently booting the old generation.
        '';
      };
      package = mkOption {
        type = types.package;
        readOnly = true;
        default = publishScript;
        defaultText = literalExpression "netboot-publish";
        description = "The `netboot-publish [TOPLEVEL]` command, also in the system path.";
      };
    };

    confirm = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Run `netboot-confirm.service` once `multi-user.target` is reached:
          it tells the appliance this boot worked, confirming a trial boot
          and making the generation last-known-good.
        '';
      };
      command = mkOption {
        type = types.listOf types.str;
        default = [
          "${pkgs.openssh}/bin/ssh"
        ]
        ++ sshArgs
        ++ [
          cfg.appliance.ssh
          "netboot"
          "confirm"
          cfg.hostName
        ];
        defaultText = literalExpression ''[ "ssh" … appliance.ssh "netboot" "confirm" hostName ]'';
        description = "Command (argv) that confirms the boot to the appliance.";
      };
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions = [
        {
          assertion = !config.boot.initrd.systemd.enable;
          message = ''
            netboot.client: the iSCSI root uses boot.iscsi-initiator, which only
            works in the scripted initrd, but boot.initrd.systemd.enable is set
            to true. Remove that setting (netboot.client defaults it to false)
            or set boot.initrd.systemd.enable = lib.mkForce false.
          '';
        }
        {
          assertion =
            cfg.publish.enable && !nixUnquotesSshOpts
            -> lib.all (arg: builtins.match ".*[[:space:]].*" arg == null) sshArgs;
          message = ''
            netboot.client: Nix ${lib.getVersion config.nix.package} splits NIX_SSHOPTS on whitespace, so
            `nix copy` would get these ssh arguments cut apart: ${builtins.toJSON sshArgs}.
            Use Nix 2.26 or later, or options without spaces (`-J jump` instead of a ProxyCommand).
          '';
        }
        {
          assertion = (cfg.publish.enable || cfg.confirm.enable) -> cfg.appliance.hostKey != null;
          message = ''
            netboot.client: publishing and confirming run ssh -o BatchMode=yes
            against ${cfg.appliance.address}, which fails on an unknown host key.
            Set netboot.client.appliance.hostKey to the appliance's key
            (cat /etc/ssh/ssh_host_ed25519_key.pub on the appliance), or turn
            off netboot.client.publish.enable and netboot.client.confirm.enable.
          '';
        }
      ];

      boot.initrd.systemd.enable = mkDefault false;

      # DHCP in the initrd by udhcpc, which sends the MAC as client
      # identifier, like networkd with ClientIdentifier=mac below.
      boot.initrd.network.enable = true;
      boot.initrd.network.udhcpc.enable = true;

      boot.iscsi-initiator = {
        name = cfg.iscsi.initiatorName;
        discoverPortal = cfg.appliance.portal;
        inherit (cfg.iscsi) target;
        extraConfigFile = mkIf (cfg.iscsi.chapConfigFile != null) "/etc/iscsi/netboot-chap.conf";
      };

      boot.initrd.extraFiles = mkIf (cfg.iscsi.chapConfigFile != null) {
        "/etc/iscsi/netboot-chap.conf".source = pkgs.runCommandLocal "netboot-iscsi-chap.conf" { } ''
          cp ${cfg.iscsi.chapConfigFile} $out
        '';
      };

      boot.initrd.kernelModules = cfg.initrdNetworkModules;
      boot.kernelParams = cfg.kernelParams;

      # The appliance is the boot loader: it serves kernel, initrd and
      # command line straight from the generation's store path.
      boot.loader.grub.enable = false;
      boot.loader.generic-extlinux-compatible.enable = false;
      boot.loader.systemd-boot.enable = false;

      fileSystems."/" = {
        device = cfg.rootDevice;
        fsType = cfg.rootFsType;
        # A network disk: stays mounted until the network goes down last.
        options = [ "_netdev" ];
      };

      systemd.network.networks."40-netboot-root" = mkIf cfg.network.enable {
        matchConfig.Type = "ether";
        networkConfig = {
          DHCP = "ipv4";
          KeepConfiguration = "yes";
        };
        dhcpV4Config.ClientIdentifier = "mac";
      };

      programs.ssh.knownHosts = mkIf (cfg.appliance.hostKey != null) {
        netboot-appliance = {
          hostNames = [ cfg.appliance.address ];
          publicKey = cfg.appliance.hostKey;
        };
      };
    }

    (mkIf cfg.publish.enable {
      system.build.installBootLoader = "${publishScript}/bin/netboot-publish";
      environment.systemPackages = [ publishScript ];
    })

    (mkIf cfg.confirm.enable {
      systemd.services.netboot-confirm = {
        description = "Confirm this boot to the netboot appliance";
        wantedBy = [ "multi-user.target" ];
        # After the target it is wanted by: "up" means multi-user reached.
        after = [
          "multi-user.target"
          "network-online.target"
        ];
        wants = [ "network-online.target" ];
        # The appliance may still be coming up: keep trying until the
        # trial's timeout decides instead.
        startLimitIntervalSec = 0;
        serviceConfig = {
          Type = "oneshot";
          # systemd unquotes like a shell but also expands `%` specifiers and
          # `$` variables, even inside quotes: ssh's %h/%p must reach ssh.
          ExecStart = lib.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (escapeShellArgs cfg.confirm.command);
          Restart = "on-failure";
          RestartSec = "15s";
        };
      };
    })
  ]);
}
