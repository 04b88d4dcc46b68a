"""``python -m appliance.boot.styles > nixos/boot-styles.json``"""

import sys

from . import registry_document

sys.stdout.write(registry_document())
