from setuptools import find_packages, setup

setup(
    name="fairseq-maskplug",
    version="0.3.0",
    description="Smarter masking for masked-LM pre-training, as a fairseq user dir",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    # the plugin (what --user-dir loads) and the lab beside it (the study, benchmark, corpus preparation)
    packages=find_packages(include=["fairseq_maskplug", "fairseq_maskplug.*", "maskplug_lab", "maskplug_lab.*"]),
    package_data={"fairseq_maskplug": ["config/**/*.yaml"], "maskplug_lab": ["corpus/brown/*"]},
    install_requires=["torch>=2.6", "fairseq-fixed==0.12.3.1", "numpy", "sentencepiece", "sacremoses", "tensorboardX"],
    extras_require={
        "test": ["pytest", "pytest-xdist", "ruff"],
        "plots": ["matplotlib"],
        "hf": ["transformers", "tokenizers", "safetensors"],
    },
)
