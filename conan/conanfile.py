import os

from conan import ConanFile
from conan.tools.files import copy
from conan.tools.layout import basic_layout


class StatedictConan(ConanFile):
    name = "statedict"
    version = "0.1.0"
    license = "MIT"
    description = "Safe state_dict loading for LibTorch: read any PyTorch checkpoint in C++ and load it into a torch::nn::Module with a structured report"
    topics = ("pytorch", "libtorch", "checkpoint", "state-dict", "safetensors", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    no_copy_source = True

    def export_sources(self):
        copy(self, "include/*", src=os.path.join(self.recipe_folder, ".."), dst=self.export_sources_folder)
        copy(self, "LICENSE", src=os.path.join(self.recipe_folder, ".."), dst=self.export_sources_folder)

    def layout(self):
        basic_layout(self, src_folder=".")

    def requirements(self):
        self.requires("libtorch/[>=1.13]")
        self.requires("nlohmann_json/[>=3.2 <4]")

    def package_id(self):
        self.info.clear()

    def package(self):
        copy(self, "*.hpp", src=os.path.join(self.source_folder, "include"), dst=os.path.join(self.package_folder, "include"))
        copy(self, "LICENSE", src=self.source_folder, dst=os.path.join(self.package_folder, "licenses"))

    def package_info(self):
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.set_property("cmake_file_name", "statedict")
        self.cpp_info.set_property("cmake_target_name", "statedict::statedict")
        self.cpp_info.requires = ["libtorch::libtorch", "nlohmann_json::nlohmann_json"]
