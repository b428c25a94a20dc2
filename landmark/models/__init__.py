"""Networks: YAML-built MobileNet backbones and the PFLD landmark network."""
