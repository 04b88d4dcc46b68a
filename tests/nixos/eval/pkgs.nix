# The few nixpkgs packages and builders the modules use, as plain records
# that build nothing: derivations are attribute sets with the real
# attribute names (outPath, name, text, buildCommand, meta, passthru
# attributes), so tests read what would be built — a script's text, the
# TOML document — and check it themselves (bash -n, shellcheck,
# netboot check). writeShellApplication writes the text exactly as
# pkgs/build-support/trivial-builders/default.nix does. Overlays apply as in
# nixpkgs (final/prev fixpoint).
{
  lib,
  system,
  overlays ? [ ],
  # tests/nixos/eval's evalSystem, for the VM test's nodes.
  evalNixos ? null,
}:
let
  fakeHash = seed: builtins.substring 0 32 (builtins.hashString "sha256" seed);

  mkDerivation =
    {
      name,
      passthru ? { },
      meta ? { },
      ...
    }@args:
    let
      drv =
        builtins.removeAttrs args [ "passthru" ]
        // passthru
        // {
          type = "derivation";
          inherit name meta;
          outPath = "/nix/store/${fakeHash (name + (args.buildCommand or "") + (args.text or ""))}-${name}";
          drvPath = "/nix/store/${fakeHash ("drv" + name + (args.buildCommand or "") + (args.text or ""))}-${name}.drv";
          outputName = "out";
          out = drv;
          inherit system;
        };
    in
    drv;

  package =
    pname: version:
    mkDerivation {
      name = "${pname}-${version}";
      inherit pname version;
      meta.mainProgram = pname;
    };

  base = final: {
    inherit lib;
    stdenv = {
      hostPlatform = {
        inherit system;
      };
      buildPlatform = {
        inherit system;
        canExecute = platform: platform.system == system;
      };
      shellDryRun = "${final.bash}/bin/bash -n -O extglob";
      inherit mkDerivation;
    };
    stdenvNoCC = final.stdenv;

    bash = package "bash" "5.2p37";
    runtimeShell = "${final.bash}/bin/bash";
    coreutils = package "coreutils" "9.7";
    openssh = package "openssh" "10.0p2" // {
      meta.mainProgram = "ssh";
    };
    openiscsi = package "open-iscsi" "2.1.11";
    nix = package "nix" "2.28.4";
    raspberrypifw = package "raspberrypi-firmware" "1.20250430";
    remarshal = package "remarshal" "0.20.0";

    runCommandWith =
      {
        name,
        derivationArgs ? { },
        runLocal ? false,
        ...
      }:
      buildCommand:
      mkDerivation (
        { inherit name buildCommand; }
        // lib.optionalAttrs runLocal {
          preferLocalBuild = true;
          allowSubstitutes = false;
        }
        // derivationArgs
      );
    runCommand =
      name: env:
      final.runCommandWith {
        inherit name;
        derivationArgs = env;
      };
    runCommandLocal =
      name: env:
      final.runCommandWith {
        inherit name;
        runLocal = true;
        derivationArgs = env;
      };

    writeTextFile =
      {
        name,
        text,
        executable ? false,
        destination ? "",
        checkPhase ? "",
        meta ? { },
        passthru ? { },
        ...
      }:
      mkDerivation {
        inherit
          name
          text
          executable
          destination
          checkPhase
          passthru
          ;
        meta =
          lib.optionalAttrs (executable && builtins.match "/bin/([^/]+)" destination != null) {
            mainProgram = lib.head (builtins.match "/bin/([^/]+)" destination);
          }
          // meta;
      };
    writeText = name: text: final.writeTextFile { inherit name text; };

    # pkgs/build-support/trivial-builders/default.nix: the same text; its
    # check phase is `bash -n -O extglob`, and passthru.tests.shellcheck runs
    # `shellcheck` with excludeShellChecks / extraShellCheckFlags only.
    writeShellApplication =
      {
        name,
        text,
        runtimeInputs ? [ ],
        runtimeEnv ? null,
        meta ? { },
        passthru ? { },
        excludeShellChecks ? [ ],
        extraShellCheckFlags ? [ ],
        bashOptions ? [
          "errexit"
          "nounset"
          "pipefail"
        ],
        inheritPath ? true,
        ...
      }:
      assert runtimeEnv == null;
      final.writeTextFile {
        inherit name meta;
        executable = true;
        destination = "/bin/${name}";
        text = ''
          #!${final.runtimeShell}
          ${lib.concatMapStringsSep "\n" (option: "set -o ${option}") bashOptions}
        ''
        + lib.optionalString (runtimeInputs != [ ]) ''

          export PATH="${lib.makeBinPath runtimeInputs}${lib.optionalString inheritPath ":$PATH"}"
        ''
        + ''

          ${text}
        '';
        checkPhase = "${final.stdenv.shellDryRun} \"$target\"";
        passthru = passthru // {
          inherit runtimeInputs;
          shellcheckFlags =
            lib.optionals (excludeShellChecks != [ ]) [
              "--exclude"
              (lib.concatStringsSep "," excludeShellChecks)
            ]
            ++ extraShellCheckFlags;
        };
      };

    # pkgs/pkgs-lib/formats.nix
    formats.toml =
      { }:
      {
        type =
          with lib.types;
          let
            valueType =
              oneOf [
                bool
                int
                float
                str
                path
                (attrsOf valueType)
                (listOf valueType)
              ]
              // {
                description = "TOML value";
              };
          in
          valueType;
        generate =
          name: value:
          final.runCommand name {
            nativeBuildInputs = [ final.remarshal ];
            value = builtins.toJSON value;
            passAsFile = [ "value" ];
          } ''json2toml "$valuePath" "$out"'';
      };

    # nixos/lib/testing (pkgs.testers.runNixOSTest): the test's options,
    # each node evaluated as a NixOS system with `nodes` as module argument.
    testers.runNixOSTest =
      testModule:
      let
        test = lib.evalModules {
          modules = [
            {
              options = {
                name = lib.mkOption { type = lib.types.str; };
                nodes = lib.mkOption { type = lib.types.lazyAttrsOf lib.types.deferredModule; };
                defaults = lib.mkOption {
                  type = lib.types.deferredModule;
                  default = { };
                };
                testScript = lib.mkOption {
                  type = lib.types.either lib.types.str (lib.types.functionTo lib.types.str);
                };
              };
            }
            testModule
          ];
        };
        evaluated = lib.mapAttrs (
          name: node:
          evalNixos {
            inherit system;
            modules = [
              test.config.defaults
              node
              {
                networking.hostName = lib.mkDefault name;
                _module.args.nodes = nodes;
              }
            ];
          }
        ) test.config.nodes;
        nodes = lib.mapAttrs (_: e: e.config) evaluated;
        script =
          if lib.isFunction test.config.testScript then
            test.config.testScript { inherit nodes; }
          else
            test.config.testScript;
      in
      mkDerivation {
        name = "vm-test-run-${test.config.name}";
        passthru = {
          inherit nodes;
          testScript = script;
        };
      };

    callPackage =
      fn: args:
      let
        f = if lib.isFunction fn then fn else import fn;
      in
      f (builtins.intersectAttrs (builtins.functionArgs f) final // args);

    # The Python packages nixos/package.nix takes, under their nixpkgs
    # attribute names (no aliases: an old name fails here as it does with
    # allowAliases = false).
    python3Packages = {
      buildPythonApplication =
        args:
        mkDerivation (
          builtins.removeAttrs args [ "pname" "version" ]
          // {
            name = "${args.pname}-${args.version}";
            inherit (args) pname version;
          }
        );
      fetchPypi = { pname, version, ... }: "/nix/store/${fakeHash pname}-${pname}-${version}.tar.gz";
      setuptools = package "python3.13-setuptools" "80.9.0";
      wheel = package "python3.13-wheel" "0.45.1";
      tftpy = package "python3.13-tftpy" "0.8.7";
      rtslib-fb = package "python3.13-rtslib-fb" "2.2.4";
      configshell-fb = package "python3.13-configshell-fb" "2.0.3";
      scapy = package "python3.13-scapy" "2.6.1";
      pyroute2 = package "python3.13-pyroute2" "0.9.4";
    };
  };
in
lib.fix (lib.foldl' (acc: overlay: lib.extends overlay acc) base overlays)
