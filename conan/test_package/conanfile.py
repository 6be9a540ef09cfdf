import os

from conan import ConanFile
from conan.tools.build import can_run
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout


class StatedictTestConan(ConanFile):
    settings = "os", "arch", "compiler", "build_type"

    def requirements(self):
        self.requires(self.tested_reference_str)

    def layout(self):
        cmake_layout(self)

    def generate(self):
        CMakeDeps(self).generate()
        tc = CMakeToolchain(self)
        # The package built with -o statedict/*:compiled=True: link statedict::compiled.
        compiled = bool(self.dependencies["statedict"].options.compiled)
        tc.cache_variables["STATEDICT_TARGET"] = "statedict::compiled" if compiled else "statedict::statedict"
        tc.generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def test(self):
        if can_run(self):
            self.run(os.path.join(self.cpp.build.bindir, "test_package"), env="conanrun")
            statedict = self.dependencies["statedict"]
            if statedict.options.tools:
                # A library package is not a "run" requirement: its bin/ is not on conanrun's PATH.
                self.run(os.path.join(statedict.package_folder, "bin", "statedict") + " --version", env="conanrun")
