"""The runners of the generation job kinds: txt2img, img2img (inpaint, outpaint, Kontext), img2img over a
folder, and the passes they add (hires fix, SDXL refiner). Each plans once and runs one batch at a time."""
