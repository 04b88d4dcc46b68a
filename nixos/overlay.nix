# Adds pkgs.netboot-appliance, the default of services.netboot-appliance.package.
final: _prev: {
  netboot-appliance = final.callPackage ./package.nix { };
}
