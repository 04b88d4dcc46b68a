# NixOS VM test: a client with no disk boots from the appliance — iPXE over
# TFTP (DHCP from dnsmasq on the appliance), root file system on an iSCSI LUN
# exported by the appliance through LIO — in the style of nixpkgs'
# nixos/tests/iscsi-root.nix. Run with `nix build .#checks.x86_64-linux.netboot-iscsi-root`.
{ lib, netbootModules, ... }:
let
  applianceAddress = "192.168.1.1";
  # The test driver's MAC for node 2 (alphabetical: appliance, client) on VLAN 1.
  clientMac = "52:54:00:12:01:02";
  initiator = "iqn.2026-04.org.nixos.test:client";
  targetPrefix = "iqn.2026-04.org.nixos.test.netboot";
  lunFile = "/var/lib/luns/client.img";
in
{
  name = "netboot-iscsi-root";

  nodes = {
    appliance =
      { nodes, pkgs, ... }:
      {
        imports = [ netbootModules.appliance ];
        virtualisation.vlans = [ 1 ];
        virtualisation.memorySize = 2048;
        # The client's system, installed onto its LUN by the test script.
        virtualisation.additionalPaths = [ nodes.client.system.build.toplevel ];
        networking.interfaces.eth1.ipv4.addresses = lib.mkForce [
          {
            address = applianceAddress;
            prefixLength = 24;
          }
        ];
        services.netboot-appliance = {
          enable = true;
          openFirewall = true;
          settings = {
            iscsi = {
              enable = true;
              portals = [ "${applianceAddress}:3260" ];
              target_prefix = targetPrefix;
            };
            hosts.client = {
              boot = "ipxe";
              mac = clientMac;
              cmdline = "console=ttyS0";
              menu_timeout = 1;
              iscsi = {
                inherit initiator;
                lun = {
                  file = lunFile;
                  size = "3G";
                };
              };
            };
          };
        };
        # Addresses and the boot file for the client's iPXE; the appliance
        # serves boot.ipxe (the client's script, found by its address).
        services.dnsmasq = {
          enable = true;
          settings = {
            port = 0;
            interface = "eth1";
            bind-interfaces = true;
            dhcp-range = "192.168.1.100,192.168.1.199";
            dhcp-boot = "boot.ipxe,,${applianceAddress}";
          };
        };
        networking.firewall.allowedUDPPorts = [ 67 ];
        environment.systemPackages = [ pkgs.e2fsprogs ];
      };

    client =
      { lib, ... }:
      {
        imports = [ netbootModules.client ];
        virtualisation.vlans = [ 1 ];
        virtualisation.memorySize = 1024;
        # Nothing local: no disk image, no -kernel; the NIC's iPXE ROM boots.
        virtualisation.useDefaultFilesystems = false;
        virtualisation.directBoot.enable = false;
        virtualisation.useBootLoader = false;
        virtualisation.diskImage = null;
        virtualisation.writableStore = false;
        virtualisation.qemu.options = [ "-boot order=n" ];
        netboot.client = {
          enable = true;
          appliance.address = applianceAddress;
          appliance.targetPrefix = targetPrefix;
          iscsi.initiatorName = initiator;
          initrdNetworkModules = [ "virtio_net" ];
          # Published by the test script instead (no SSH keys in a test).
          publish.enable = false;
          confirm.enable = false;
        };
        system.stateVersion = lib.trivial.release;
      };
  };

  testScript =
    { nodes, ... }:
    let
      toplevel = nodes.client.system.build.toplevel;
    in
    ''
      import json

      appliance.start()
      appliance.wait_for_unit("netboot-appliance.service")
      appliance.wait_for_unit("dnsmasq.service")

      with subtest("the client's root file system goes onto its LUN file"):
          appliance.succeed(
              "mkdir -p /var/lib/luns /mnt",
              "truncate -s 3G ${lunFile}",
              "mkfs.ext4 -q -L PIROOT ${lunFile}",
              "mount -o loop ${lunFile} /mnt",
              "nixos-install --root /mnt --system ${toplevel} --no-bootloader --no-root-passwd --no-channel-copy",
              "umount /mnt",
          )

      with subtest("the generation is registered and the LUN exported"):
          appliance.succeed("netboot register client ${toplevel}")
          appliance.succeed("netboot iscsi apply")
          appliance.succeed("netboot tree client | grep -q boot.ipxe")
          # rtslib moved LIO's database root before the fabric loaded.
          appliance.succeed("grep -qx /etc/target /sys/kernel/config/target/dbroot")

      with subtest("the client netboots and mounts its root over iSCSI"):
          client.start()
          client.wait_for_unit("multi-user.target")
          client.succeed("findmnt -n -o SOURCE / | grep -q /dev/sd")
          client.succeed("touch /written-over-iscsi")

      with subtest("the appliance sees the session and the boot; a second apply changes nothing"):
          status = json.loads(appliance.succeed("netboot status client --json"))["hosts"]["client"]
          assert status["iscsi"]["session"], status
          assert any(e.get("path", "").endswith("/kernel") for e in status["last_boot_events"]), status
          plan = json.loads(appliance.succeed("netboot iscsi plan --json"))
          assert plan["actions"] == [], plan

      client.shutdown()
      appliance.shutdown()
    '';
}
