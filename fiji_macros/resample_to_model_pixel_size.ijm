// resample_to_model_pixel_size.ijm - bring an image to the pixel size a model was trained at.
//
// Part of rescale4dl_bmz. A model exported by rescale4dl works best on images whose pixel size
// (in µm) matches the one in its bioimage.io metadata. This macro reads the image's calibration
// and a target pixel size, then:
//   - target / pixel size is an integer n >= 2: Image > Transform > Bin (n x n, average), the
//     block mean the model was trained on;
//   - otherwise: Image > Adjust > Size with bicubic interpolation (averaging when shrinking)
//     to round(width * pixel size / target) x round(height * pixel size / target);
// and sets the calibration to exactly the target (unit micron).
//
// Use:
//   - argument "input=<file>\noutput=<file.tif>\ntarget=<µm>" (one key=value per line; ';'
//     also separates pairs), optional "pixel=<µm>" to override the file's calibration;
//   - argument "target=<µm>" alone: works on the active image and leaves the result open;
//   - no argument: asks for the target pixel size and works on the active image.
// Errors end the macro with exit("...") naming the file; the result is only saved on success.

requires("1.52a");

main(getArgument());

function main(argument) {
	input = argValue(argument, "input", "");
	output = argValue(argument, "output", "");
	targetText = argValue(argument, "target", "");
	pixelText = argValue(argument, "pixel", "");
	if (input == "" && nImages == 0)
		exit("resample_to_model_pixel_size: no image open and no input= given");
	if (targetText == "") {
		if (argument != "")
			exit("resample_to_model_pixel_size: no target= pixel size given");
		targetText = d2s(getNumber("Model pixel size (micron)", 0.1), 9);
	}
	target = parseFloat(targetText);
	if (isNaN(target) || target <= 0)
		exit("resample_to_model_pixel_size: target pixel size must be a positive number, got '" + targetText + "'");
	if (input == "") {
		setBatchMode(true);
		resample(getImageID(), getTitle(), target, pixelText);
		setBatchMode("exit and display");
		return;
	}
	if (output == "")
		exit("resample_to_model_pixel_size: input= given without output=");
	if (!File.exists(input) || File.isDirectory(input))
		exit("resample_to_model_pixel_size: input file not found: " + input);
	setBatchMode(true);
	before = nImages;
	open(input);
	if (nImages == before)
		exit("resample_to_model_pixel_size: cannot open " + input);
	resample(getImageID(), input, target, pixelText);
	saveAs("Tiff", output);
	close();
	setBatchMode(false);
}

// Resamples image `id` in place to `target` µm/pixel; `name` is for messages.
function resample(id, name, target, pixelText) {
	selectImage(id);
	run("Select None");
	if (pixelText != "") {
		pw = parseFloat(pixelText);
		ph = pw;
		if (isNaN(pw) || pw <= 0)
			exit("resample_to_model_pixel_size: pixel= must be a positive number, got '" + pixelText + "'");
	} else {
		getPixelSize(unit, pw, ph);
		scale = unitInMicron(unit);
		if (scale <= 0)
			exit("resample_to_model_pixel_size: " + name + " has no physical pixel size (unit '" + unit + "'); give pixel=<micron>");
		pw = pw * scale;
		ph = ph * scale;
	}
	rx = target / pw;
	ry = target / ph;
	n = round(rx);
	if (n >= 2 && round(ry) == n && abs(rx - n) <= 1e-3 * n && abs(ry - n) <= 1e-3 * n) {
		run("Bin...", "x=" + n + " y=" + n + " bin=Average");
	} else if (abs(rx - 1) > 1e-6 || abs(ry - 1) > 1e-6) {
		width = round(getWidth() / rx);
		height = round(getHeight() / ry);
		if (width < 1 || height < 1)
			exit("resample_to_model_pixel_size: " + name + " would shrink below one pixel at " + target + " micron");
		run("Size...", "width=" + width + " height=" + height + " depth=" + nSlices + " average interpolation=Bicubic");
	}
	getVoxelSize(w, h, depth, unit);
	setVoxelSize(target, target, depth, "micron");
}

// Micrometres per calibration unit; 0 when the image is not calibrated.
function unitInMicron(unit) {
	u = toLowerCase(unit);
	if (u == "micron" || u == "microns" || u == "um" || u == "µm" || u == fromCharCode(0x3bc) + "m" || u == "micrometer")
		return 1;
	if (u == "nm" || u == "nanometer")
		return 0.001;
	if (u == "mm" || u == "millimeter")
		return 1000;
	if (u == "cm")
		return 10000;
	return 0;
}

// The value of key in "key=value" lines (or ';'-separated pairs); fallback when absent.
function argValue(argument, key, fallback) {
	lines = split(argument, "\n");
	if (lines.length == 1 && indexOf(argument, "\n") < 0 && indexOf(argument, ";") >= 0)
		lines = split(argument, ";");
	for (i = 0; i < lines.length; i++) {
		line = replace(lines[i], "^\\s+|\\s+$", "");
		if (startsWith(line, key + "="))
			return substring(line, lengthOf(key) + 1);
	}
	return fallback;
}
