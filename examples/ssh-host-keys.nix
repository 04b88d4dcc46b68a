# SSH host keys of the example deployment (public halves only). Replace each
# with the real one: `cat /etc/ssh/ssh_host_ed25519_key.pub` on that machine.
# The appliance pins `appliance` on every client (netboot.client.appliance.hostKey);
# each client key may publish and confirm its own host only
# (services.netboot-appliance.clientKeys).
{
  appliance = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEsQLpbfgg3JyN2OVGdgAp9NGQBZyU643rKDVz5dcMt+ root@netboot";
  clients = {
    pi-desktop = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMOzb1NaW/T7duXVDP+C5DpzSeJRlr2StW3oeROVGMZA root@pi-desktop";
    pi-node-1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC377j7e1iXMT51/lq0GylNYoPFWQhr4hBv+aJsxE/Zv root@pi-node-1";
    pi-node-2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBegZSSVhQVB7FwefsjypKHC4O+lPjMrriY9IFUmQX3G root@pi-node-2";
    pi-node-3 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE58AaJOP+f9fpTPTxku6B3QeHC89yseSvrtN556THPW root@pi-node-3";
    pi-node-4 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILev+bVTNYz6jU66dMUR8f8mTTCV/D2JMOSIsHDBK6NU root@pi-node-4";
    pi-node-5 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGi4T0FaQBJqRIYpAYoa5YzGS97G1o94GDPQPIO955Wn root@pi-node-5";
    pi-node-6 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPpWezJiuArO1IU3x/ZpJvenz825clMSEQmfUc+AoyR+ root@pi-node-6";
    pi-node-7 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE6hHwLsAk8RX8KF0mvU5Lvx4iGewND4fT3SnshWJW9p root@pi-node-7";
  };
}
