# Pure helpers shared by the NixOS modules and the flake.
#
# Only builtins are used (no nixpkgs `lib`), so tests can evaluate this file
# with a bare `nix-instantiate --eval` and compare the results with what the
# Python appliance reads.
let
  isSecretKey = key: builtins.elem key [ "secret" "mutual_secret" "password" ];

  hasPrefix = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;

  hostsOf = settings: settings.hosts or { };

  chapOf = host: if (host.iscsi or null) == null then { } else (host.iscsi.chap or null);
in
rec {
  # The appliance's boot styles (generated from its registry:
  # `python -m appliance.boot.styles > nixos/boot-styles.json`).
  bootStyles = builtins.fromJSON (builtins.readFile ./boot-styles.json);

  # The appliance's built-in default; kept here so the client module can
  # derive the same target IQN without the server's configuration.
  defaultTargetPrefix = "iqn.2026-11.lan.netboot";

  # An iSCSI name as the appliance accepts it (appliance/config/values.py, RFC 3720
  # §3.2.6): iqn.YYYY-MM.reverse.domain[:identifier] of a-z 0-9 '-' '.' ':', or
  # eui.<16 hex digits>, at most 223 bytes.
  isIscsiName =
    s:
    builtins.isString s
    && builtins.stringLength s <= 223
    && (
      builtins.match "iqn\\.[0-9]{4}-(0[1-9]|1[0-2])\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[a-z0-9.:-]+)?" s != null
      || builtins.match "eui\\.[0-9A-Fa-f]{16}" s != null
    );

  # A target prefix: an iSCSI name without ':' (the host name is appended as ':<host>').
  isTargetPrefix = s: isIscsiName s && builtins.match ".*:.*" s == null;

  # Option types of both modules, given nixpkgs' `lib.types`.
  optionTypes = types: {
    iscsiName = types.addCheck types.str isIscsiName // {
      description = "iSCSI name (lower-case iqn.YYYY-MM.reverse.domain[:identifier] or eui.<16 hex digits>)";
    };
    macAddress = types.addCheck types.str (mac: normalizeMac mac != null) // {
      description = "MAC address of a network card (six hex pairs, `:` or `-`, any case)";
    };
    listenAddress = types.addCheck types.str isListenAddress // {
      description = "listen address (IP literal, IPv6 in brackets, optionally :port)";
    };
    targetPrefix = types.addCheck types.str isTargetPrefix // {
      description = "iSCSI name without `:` (lower-case iqn.YYYY-MM.reverse.domain)";
    };
  };

  # A MAC address as the appliance normalises it (appliance/config/values.py): six hex
  # pairs separated all by ':' or all by '-', any case, surrounding whitespace ignored →
  # "dc:a6:32:01:02:03"; null for anything else, and for group (multicast, broadcast)
  # and all-zero addresses, which no network card has.
  normalizeMac =
    mac:
    let
      trimmed = builtins.match "[[:space:]]*([^[:space:]]*)[[:space:]]*" mac;
      lower = builtins.replaceStrings [ "A" "B" "C" "D" "E" "F" "-" ] [ "a" "b" "c" "d" "e" "f" ":" ] (builtins.head trimmed);
      pair = "[0-9a-fA-F]{2}";
      sameSeparator = sep: builtins.match "${pair}(${sep}${pair}){5}" (builtins.head trimmed) != null;
      groupBit = builtins.elem (builtins.substring 1 1 lower) [ "1" "3" "5" "7" "9" "b" "d" "f" ];
    in
    if !(builtins.isString mac) || trimmed == null || !(sameSeparator ":" || sameSeparator "-") then
      null
    else if groupBit || lower == "00:00:00:00:00:00" then
      null
    else
      lower;

  # "hosts.<b>.mac: … is already used by host <a>" for each MAC given to a second host.
  duplicateMacs =
    settings:
    let
      hosts = hostsOf settings;
      withMac = builtins.filter (name: normalizeMac (hosts.${name}.mac or null) != null) (builtins.attrNames hosts);
      step =
        acc: name:
        let
          mac = normalizeMac hosts.${name}.mac;
        in
        if acc.seen ? ${mac} then
          acc // { found = acc.found ++ [ "hosts.${name}.mac: ${mac} is already used by host ${acc.seen.${mac}}" ]; }
        else
          acc // { seen = acc.seen // { ${mac} = name; }; };
    in
    (builtins.foldl' step { seen = { }; found = [ ]; } withMac).found;

  # A host name as the appliance accepts it: it becomes part of IQNs, LIO names and
  # the forced command of the host's SSH keys.
  isHostName = name: builtins.match "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?" name != null;

  # Target IQN the appliance creates for a host (README: iSCSI root LUNs).
  targetIqn = prefix: host: "${prefix}:${host}";

  # Module option values → the document written as TOML.
  # TOML has no null: an option left at null means "use the appliance's
  # default", so it is left out rather than written.
  toSettings =
    value:
    if builtins.isAttrs value then
      builtins.mapAttrs (_: toSettings) (
        builtins.removeAttrs value (builtins.filter (k: value.${k} == null) (builtins.attrNames value))
      )
    else if builtins.isList value then
      map toSettings (builtins.filter (v: v != null) value)
    else
      value;

  # Key paths of CHAP secrets written inline instead of in a file.
  inlineSecretKeys =
    settings:
    builtins.concatLists (
      builtins.attrValues (
        builtins.mapAttrs (
          name: host:
          let
            chap = chapOf host;
          in
          if builtins.isAttrs chap then
            map (key: "hosts.${name}.iscsi.chap.${key}") (
              builtins.filter (key: isSecretKey key && chap.${key} != null) (builtins.attrNames chap)
            )
          else
            [ ]
        ) (hostsOf settings)
      )
    );

  # Key paths of CHAP secret files that lie in the world-readable Nix store.
  storeSecretFiles =
    settings:
    builtins.concatLists (
      builtins.attrValues (
        builtins.mapAttrs (
          name: host:
          let
            chap = chapOf host;
            inStore = key: builtins.isAttrs chap && (chap.${key} or null) != null && hasPrefix "/nix/store/" (toString chap.${key});
          in
          map (key: "hosts.${name}.iscsi.chap.${key}") (
            builtins.filter inStore [ "secret_file" "mutual_secret_file" ]
          )
        ) (hostsOf settings)
      )
    );

  # "0.0.0.0:69", "[::]:69", "10.0.4.3", "10.0.4.3:" → { host; port; } as the appliance
  # reads a listen address (appliance/listen.py): surrounding whitespace ignored, port ""
  # when none is given; null when it is no IP literal with an optional port. Whether
  # the IP literal is an address (999.0.0.1) is left to `netboot check`.
  parseListen =
    address:
    let
      trimmed = builtins.match "[[:space:]]*([^[:space:]]*)[[:space:]]*" address;
      text = builtins.head trimmed;
      bracketed = builtins.match "[[]([0-9A-Fa-f:.]+)[]](:([0-9]*))?" text;
      colons = builtins.length (builtins.split ":" text) / 2;
      hostPort = builtins.match "([0-9A-Fa-f.]+):([0-9]*)" text;
      port = p: if p == null then "" else p;
    in
    if !(builtins.isString address) || trimmed == null || text == "" then
      null
    else if builtins.substring 0 1 text == "[" then
      if bracketed == null then null else { host = builtins.elemAt bracketed 0; port = port (builtins.elemAt bracketed 2); }
    else if colons == 1 then
      if hostPort == null then null else { host = builtins.elemAt hostPort 0; port = builtins.elemAt hostPort 1; }
    else if builtins.match "[0-9A-Fa-f:.]+" text != null then
      { host = text; port = ""; }
    else
      null;

  # The decimal digits of a port → its number (leading zeros allowed); null when out of range.
  portNumber =
    digits:
    let
      significant = builtins.head (builtins.match "0*([0-9]+)" digits);
      n = if builtins.stringLength significant > 5 then 65536 else builtins.fromJSON significant;
    in
    if n > 65535 then null else n;

  isListenAddress =
    address:
    let
      parsed = parseListen address;
    in
    parsed != null && (parsed.port == "" || portNumber parsed.port != null);

  # The port of a listen address (defaultPort when none is given).
  listenPort =
    defaultPort: address:
    let
      parsed = parseListen address;
    in
    if !(isListenAddress address) then
      throw "netboot: ${builtins.toJSON address} is not a listen address (IP or [IPv6], optionally :port)"
    else if parsed.port == "" then
      defaultPort
    else
      portNumber parsed.port;

  # UDP ports the TFTP server listens on.
  tftpPorts =
    settings:
    let
      listen = settings.server.tftp_listen or null;
    in
    unique (map (listenPort 69) (if listen == null then [ "0.0.0.0:69" ] else listen));

  # TCP ports of the HTTP transport (none when it is off).
  httpPorts = settings: unique (map (listenPort 80) (settings.server.http_listen or [ ]));

  # TCP ports of the iSCSI portals (none when iSCSI is off).
  iscsiPorts =
    settings:
    if (settings.iscsi.enable or false) == true then
      unique (map (listenPort 3260) (settings.iscsi.portals or [ ]))
    else
      [ ];

  unique = builtins.foldl' (acc: x: if builtins.elem x acc then acc else acc ++ [ x ]) [ ];

  # Names of the hosts whose boot style takes the Pi firmware by default (they need [firmware.rpi]).
  rpiHosts =
    settings:
    let
      piStyles = map (style: style.name) (builtins.filter (style: style.firmware == "rpi") bootStyles);
    in
    builtins.filter (name: builtins.elem ((hostsOf settings).${name}.boot or null) piStyles) (
      builtins.attrNames (hostsOf settings)
    );

  # Paths the module writes into the systemd unit (ReadWritePaths=, RequiresMountsFor=,
  # StateDirectory=) and tmpfiles rules, by option path, that those would misread:
  # whitespace splits a field, `%` is a specifier, quotes and backslashes are unquoted.
  # The appliance itself accepts them; the unit would protect or create the wrong path.
  unitUnsafePaths =
    settings:
    let
      unsafe = path: builtins.match ''.*[[:space:]%"'\\].*'' (toString path) != null;
      at = option: path: if path != null && unsafe path then [ "${option}: ${builtins.toJSON (toString path)}" ] else [ ];
      server = settings.server or { };
      lunFile = host: if (host.iscsi or null) == null then null else (host.iscsi.lun.file or null);
    in
    at "server.state_dir" (server.state_dir or null)
    ++ at "server.gcroots_dir" (server.gcroots_dir or null)
    ++ builtins.concatLists (
      builtins.attrValues (
        builtins.mapAttrs (
          name: host:
          at "hosts.${name}.profile" (host.profile or null) ++ at "hosts.${name}.iscsi.lun.file" (lunFile host)
        ) (hostsOf settings)
      )
    );

  # Profile directories the appliance serves from (parents of each profile).
  profileDirs =
    settings:
    unique (
      map (host: builtins.dirOf (toString host.profile)) (
        builtins.filter (host: (host.profile or null) != null) (builtins.attrValues (hostsOf settings))
      )
    );
}
